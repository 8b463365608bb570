//! Stateid management: TEST_STATEID, FREE_STATEID, DELEGRETURN.

use openefs_nfs_wire::nfs4::types::Stateid4;
use openefs_nfs_wire::nfs4::{Nfs4Error, Nfs4Status};

use crate::compound::Ctx;

pub fn test_stateid(
    ctx: &mut Ctx<'_>,
    stateids: Vec<Stateid4>,
) -> Result<Vec<Nfs4Status>, Nfs4Error> {
    let client = ctx.client()?;
    let state = ctx.server.state();
    Ok(stateids
        .into_iter()
        .map(|s| state.test_stateid(client, s).map_err(Nfs4Error::from))
        .collect())
}

pub fn free_stateid(ctx: &mut Ctx<'_>, stateid: Stateid4) -> Result<(), Nfs4Error> {
    let stateid = ctx.resolve_stateid(stateid)?;
    Ok(ctx.server.state().free_stateid(ctx.client()?, stateid)?)
}

/// No delegation is ever granted, so every stateid is unknown as one.
pub fn delegreturn(ctx: &mut Ctx<'_>, _stateid: Stateid4) -> Result<(), Nfs4Error> {
    ctx.client()?;
    Err(Nfs4Error::BadStateid)
}
