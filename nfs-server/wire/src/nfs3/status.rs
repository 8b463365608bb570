//! `nfsstat3` and the shape of every NFSv3 result: a status, then the
//! `resok` arm or a `resfail` arm that (unlike NFSv4) often carries
//! attributes too.

use crate::xdr::{Decoder, Encoder, XdrDecode, XdrEncode, XdrError, status_error, xdr_enum};

xdr_enum! {
    /// Every non-OK `nfsstat3` value; `NFS3_OK` is the `Ok` of [`Res3`].
    pub enum Nfs3Error {
        Perm = 1,
        Noent = 2,
        Io = 5,
        Nxio = 6,
        Acces = 13,
        Exist = 17,
        Xdev = 18,
        Nodev = 19,
        Notdir = 20,
        Isdir = 21,
        Inval = 22,
        Fbig = 27,
        Nospc = 28,
        Rofs = 30,
        Mlink = 31,
        Nametoolong = 63,
        Notempty = 66,
        Dquot = 69,
        Stale = 70,
        Remote = 71,
        Badhandle = 10001,
        NotSync = 10002,
        BadCookie = 10003,
        Notsupp = 10004,
        Toosmall = 10005,
        Serverfault = 10006,
        Badtype = 10007,
        Jukebox = 10008,
    }
}

status_error!(Nfs3Error, "NFS3ERR_");

/// A failed procedure: its status and the `resfail` arm (attributes the
/// client uses to keep its cache right even on failure; `()` where the
/// arm is void).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fail3<F> {
    pub status: Nfs3Error,
    pub body: F,
}

impl<F: Default> From<Nfs3Error> for Fail3<F> {
    /// A failure with empty attributes: always valid, since every
    /// `resfail` attribute is optional (`post_op_attr`, `wcc_data`).
    fn from(status: Nfs3Error) -> Self {
        Self {
            status,
            body: F::default(),
        }
    }
}

/// An NFSv3 result: `resok` or a status with its `resfail` arm.
pub type Res3<T, F> = Result<T, Fail3<F>>;

impl<T: XdrEncode, F: XdrEncode> XdrEncode for Result<T, Fail3<F>> {
    fn encode(&self, enc: &mut Encoder) {
        match self {
            Ok(v) => {
                enc.put_u32(0);
                v.encode(enc);
            }
            Err(f) => {
                f.status.encode(enc);
                f.body.encode(enc);
            }
        }
    }
}

impl<T: XdrDecode, F: XdrDecode> XdrDecode for Result<T, Fail3<F>> {
    fn decode(dec: &mut Decoder) -> Result<Self, XdrError> {
        match dec.u32()? {
            0 => T::decode(dec).map(Ok),
            code => Ok(Err(Fail3 {
                status: Nfs3Error::try_from(code)?,
                body: F::decode(dec)?,
            })),
        }
    }
}

/// The status of any result, as its wire value.
pub fn status_code<T, F>(res: &Res3<T, F>) -> u32 {
    match res {
        Ok(_) => 0,
        Err(f) => f.status.code(),
    }
}
