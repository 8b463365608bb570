//! Per-key in-flight guards: one operation per volume at a time, as the CSI
//! spec allows a plugin to demand (ABORTED for the second caller).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, PoisonError},
};

/// Keys with an operation running. Owned by a service, not global, so tests
/// and several services in one process do not share state.
#[derive(Debug, Default, Clone)]
pub struct InFlight {
    keys: Arc<Mutex<HashSet<String>>>,
}

/// Held while an operation on a key runs; releases the key when dropped, on
/// every path out of the operation (including cancellation).
#[derive(Debug)]
pub struct Guard {
    keys: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl InFlight {
    /// Claim `key`, or `None` when an operation on it is already running.
    pub fn try_start(&self, key: &str) -> Option<Guard> {
        // The set stays consistent even if a holder panicked: insert and
        // remove are single calls.
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.insert(key.to_owned()).then(|| Guard {
            keys: Arc::clone(&self.keys),
            key: key.to_owned(),
        })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_per_key() {
        let f = InFlight::default();
        let a = f.try_start("v1").expect("first claim");
        assert!(f.try_start("v1").is_none());
        let b = f.try_start("v2").expect("other key");
        drop(a);
        assert!(f.try_start("v1").is_some());
        drop(b);
    }
}
