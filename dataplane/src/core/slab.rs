//! A fixed-capacity slab: slots allocated at start-up, keys with a generation so a stale key never reaches a
//! slot's new occupant.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    index: u32,
    generation: u32,
}

impl Key {
    pub fn index(self) -> usize {
        self.index as usize
    }
}

#[derive(Debug)]
pub struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
}

#[derive(Debug)]
struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

impl<T> Slab<T> {
    pub fn with_capacity(capacity: usize) -> Slab<T> {
        let slots = (0..capacity).map(|_| Slot { generation: 0, value: None }).collect();
        // Popped from the end: hand out low indices first.
        let free = (0..capacity as u32).rev().collect();
        Slab { slots, free }
    }

    /// `None` when full: the caller refuses, nothing grows.
    pub fn insert(&mut self, value: T) -> Option<Key> {
        let index = self.free.pop()?;
        let slot = &mut self.slots[index as usize];
        slot.value = Some(value);
        Some(Key { index, generation: slot.generation })
    }

    pub fn remove(&mut self, key: Key) -> Option<T> {
        let slot = self.slots.get_mut(key.index())?;
        if slot.generation != key.generation || slot.value.is_none() {
            return None;
        }
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(key.index);
        slot.value.take()
    }

    pub fn get(&self, key: Key) -> Option<&T> {
        let slot = self.slots.get(key.index())?;
        if slot.generation == key.generation { slot.value.as_ref() } else { None }
    }

    pub fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        let slot = self.slots.get_mut(key.index())?;
        if slot.generation == key.generation { slot.value.as_mut() } else { None }
    }

    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Key, &mut T)> {
        self.slots.iter_mut().enumerate().filter_map(|(i, s)| {
            let generation = s.generation;
            s.value.as_mut().map(|v| (Key { index: i as u32, generation }, v))
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = (Key, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.value.as_ref().map(|v| (Key { index: i as u32, generation: s.generation }, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_slabs_refuse_and_stale_keys_miss() {
        let mut s = Slab::with_capacity(2);
        let a = s.insert("a").unwrap();
        let b = s.insert("b").unwrap();
        assert_eq!(s.insert("c"), None);
        assert_eq!(s.remove(a), Some("a"));
        let c = s.insert("c").unwrap();
        assert_eq!(c.index(), a.index());
        assert_eq!(s.get(a), None, "the old key does not reach the new occupant");
        assert_eq!(s.get(c), Some(&"c"));
        assert_eq!(s.remove(a), None);
        assert_eq!((s.len(), s.get(b)), (2, Some(&"b")));
    }
}
