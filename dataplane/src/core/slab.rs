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
    /// One past the highest slot ever occupied. Iteration stops here: slots are large (a participant's is about
    /// 4 KiB) and the capacity is the configured maximum, so sweeping every slot once a second cost a cache and
    /// TLB miss per slot, most of them empty.
    high_water: usize,
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
        Slab { slots, free, high_water: 0 }
    }

    /// `None` when full: the caller refuses, nothing grows.
    pub fn insert(&mut self, value: T) -> Option<Key> {
        let index = self.free.pop()?;
        self.high_water = self.high_water.max(index as usize + 1);
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
        self.slots[..self.high_water].iter_mut().enumerate().filter_map(|(i, s)| {
            let generation = s.generation;
            s.value.as_mut().map(|v| (Key { index: i as u32, generation }, v))
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = (Key, &T)> {
        self.slots[..self.high_water]
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

    #[test]
    fn iteration_sees_every_occupant_and_stops_at_the_highest_slot_used() {
        let mut s = Slab::with_capacity(1000);
        let keys: Vec<Key> = (0..5).map(|i| s.insert(i).unwrap()).collect();
        s.remove(keys[1]);
        s.remove(keys[4]);
        let seen: Vec<i32> = s.iter().map(|(_, v)| *v).collect();
        assert_eq!(seen, [0, 2, 3]);
        assert_eq!(s.high_water, 5);
        let again = s.insert(9).unwrap();
        assert_eq!(again.index(), keys[4].index(), "a freed slot is reused before a new one: no growth past the mark");
        for (_, v) in s.iter_mut() {
            *v += 100;
        }
        let seen: Vec<(usize, i32)> = s.iter().map(|(k, v)| (k.index(), *v)).collect();
        assert_eq!(seen, [(0, 100), (2, 102), (3, 103), (4, 109)]);
        assert_eq!(s.high_water, 5);
    }
}
