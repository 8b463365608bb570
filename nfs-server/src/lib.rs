//! openefs-nfsd: the openefs data plane.
