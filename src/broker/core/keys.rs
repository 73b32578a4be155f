//! Typed keys of a shard's two slabs, and the slab that only takes its own kind of key: a
//! session key can never index the connections, nor a connection key the sessions.
//!
//! Keys are `u32` (both slabs are bounded by `max_connections` and `max_sessions`, at most
//! 10,000,000), which also keeps `Option<key>` fields at 8 bytes in every idle connection and
//! session.

use slab::Slab;
use std::marker::PhantomData;

/// A key of one of the shard's slabs.
pub trait SlotKey: Copy {
    fn from_index(index: usize) -> Self;
    fn index(self) -> usize;
}

macro_rules! slot_key {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u32);

        impl SlotKey for $name {
            #[inline]
            fn from_index(index: usize) -> Self {
                // The slabs stay far below u32::MAX entries (see the module doc).
                debug_assert!(u32::try_from(index).is_ok());
                $name(index as u32)
            }

            #[inline]
            fn index(self) -> usize {
                self.0 as usize
            }
        }

        impl $name {
            /// The key of slab index `index`.
            #[inline]
            pub fn new(index: usize) -> Self {
                <Self as SlotKey>::from_index(index)
            }

            /// The slab index (the runtime keeps a connection's socket under it).
            #[inline]
            pub fn index(self) -> usize {
                <Self as SlotKey>::index(self)
            }
        }
    };
}

slot_key!(
    /// A connection's key on its shard: the index the runtime keeps its socket under, and
    /// the token of its readiness events. Reused after the connection closed (`Connection::id`
    /// tells incarnations apart).
    ConnKey
);
slot_key!(
    /// A session's key on its shard (reused after the session ended; `ShardSession::generation`
    /// tells incarnations apart).
    SessionKey
);

/// A slab indexed by one kind of key.
#[derive(Debug)]
pub struct Slots<K, V> {
    slab: Slab<V>,
    _key: PhantomData<K>,
}

impl<K: SlotKey, V> Default for Slots<K, V> {
    fn default() -> Self {
        Slots {
            slab: Slab::new(),
            _key: PhantomData,
        }
    }
}

impl<K: SlotKey, V> Slots<K, V> {
    #[inline]
    pub fn get(&self, key: K) -> Option<&V> {
        self.slab.get(key.index())
    }

    #[inline]
    pub fn get_mut(&mut self, key: K) -> Option<&mut V> {
        self.slab.get_mut(key.index())
    }

    #[inline]
    pub fn contains(&self, key: K) -> bool {
        self.slab.contains(key.index())
    }

    pub fn insert(&mut self, value: V) -> K {
        K::from_index(self.slab.insert(value))
    }

    /// The key the next `insert` returns.
    pub fn vacant_key(&self) -> K {
        K::from_index(self.slab.vacant_key())
    }

    /// Removes and returns the value; panics if `key` is vacant (a bug: callers check first).
    pub fn remove(&mut self, key: K) -> V {
        self.slab.remove(key.index())
    }

    pub fn try_remove(&mut self, key: K) -> Option<V> {
        self.slab.try_remove(key.index())
    }

    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    pub fn clear(&mut self) {
        self.slab.clear();
    }

    pub fn iter(&self) -> impl Iterator<Item = (K, &V)> {
        self.slab.iter().map(|(i, v)| (K::from_index(i), v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (K, &mut V)> {
        self.slab.iter_mut().map(|(i, v)| (K::from_index(i), v))
    }
}

impl<K: SlotKey, V> std::ops::Index<K> for Slots<K, V> {
    type Output = V;

    fn index(&self, key: K) -> &V {
        &self.slab[key.index()]
    }
}

impl<K: SlotKey, V> std::ops::IndexMut<K> for Slots<K, V> {
    fn index_mut(&mut self, key: K) -> &mut V {
        &mut self.slab[key.index()]
    }
}
