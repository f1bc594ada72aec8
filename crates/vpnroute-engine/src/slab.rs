//! Minimal slab: dense `u32` keys that are reused after removal.

#[derive(Debug, Clone)]
enum Entry<T> {
    Occupied(T),
    Vacant { next_free: u32 },
}

/// Storage addressed by small dense `u32` keys, so that tries can hold keys as values.
#[derive(Debug, Clone)]
pub(crate) struct Slab<T> {
    entries: Vec<Entry<T>>,
    first_free: u32,
}

const NO_FREE: u32 = u32::MAX;

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            entries: Vec::new(),
            first_free: NO_FREE,
        }
    }
}

impl<T> Slab<T> {
    pub(crate) fn insert(&mut self, value: T) -> u32 {
        if let Some(entry) = self.entries.get_mut(self.first_free as usize) {
            let key = self.first_free;
            if let Entry::Vacant { next_free } = *entry {
                self.first_free = next_free;
            }
            *entry = Entry::Occupied(value);
            key
        } else {
            self.entries.push(Entry::Occupied(value));
            (self.entries.len() - 1) as u32
        }
    }

    pub(crate) fn remove(&mut self, key: u32) -> Option<T> {
        let entry = self.entries.get_mut(key as usize)?;
        if matches!(entry, Entry::Vacant { .. }) {
            return None;
        }
        let old = std::mem::replace(
            entry,
            Entry::Vacant {
                next_free: self.first_free,
            },
        );
        self.first_free = key;
        match old {
            Entry::Occupied(value) => Some(value),
            Entry::Vacant { .. } => None,
        }
    }

    #[inline]
    pub(crate) fn get(&self, key: u32) -> Option<&T> {
        match self.entries.get(key as usize) {
            Some(Entry::Occupied(value)) => Some(value),
            _ => None,
        }
    }

    pub(crate) fn get_mut(&mut self, key: u32) -> Option<&mut T> {
        match self.entries.get_mut(key as usize) {
            Some(Entry::Occupied(value)) => Some(value),
            _ => None,
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.entries.iter().enumerate().filter_map(|(key, entry)| match entry {
            Entry::Occupied(value) => Some((key as u32, value)),
            Entry::Vacant { .. } => None,
        })
    }

    pub(crate) fn capacity_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry<T>>()
    }
}
