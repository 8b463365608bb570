//! XDR (RFC 4506), ONC RPC (RFC 5531) and NFS wire types. No I/O.
