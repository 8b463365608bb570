//! The openefs API (`openefs.io/v1alpha1`).
