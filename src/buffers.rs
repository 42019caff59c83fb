//! Batch buffers shared by the dump reader, the transform workers and the writers. Knows nothing of
//! rows or formats.

/// Batch buffers that go round instead of being allocated for every batch: the reader and the
/// workers take them, the workers and the writer give them back. A fresh buffer of most of a
/// megabyte costs page faults and the allocator's page set-up every time (3-5% of a dump run in a
/// profile). Holds at most `keep` buffers of at most `max_capacity` bytes, so memory stays bounded;
/// the default pool keeps none.
#[derive(Debug, Default)]
pub struct BufferPool {
    free: std::sync::Mutex<Vec<Vec<u8>>>,
    keep: usize,
    max_capacity: usize,
}

impl BufferPool {
    pub fn new(keep: usize, max_capacity: usize) -> Self {
        BufferPool {
            free: std::sync::Mutex::new(Vec::with_capacity(keep)),
            keep,
            max_capacity,
        }
    }

    /// An empty buffer with room for `capacity` bytes.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        match self.free.lock().ok().and_then(|mut free| free.pop()) {
            Some(b) if b.capacity() >= capacity => b,
            // Growing an empty buffer would copy its old bytes: a new one costs less.
            _ => Vec::with_capacity(capacity),
        }
    }

    pub fn give(&self, mut b: Vec<u8>) {
        if b.capacity() == 0 || b.capacity() > self.max_capacity {
            return;
        }
        b.clear();
        if let Ok(mut free) = self.free.lock() {
            if free.len() < self.keep {
                free.push(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_pool_reuses_a_bounded_number_of_buffers() {
        let pool = BufferPool::new(2, 1000);
        let a = pool.take(100);
        let ptr = a.as_ptr();
        pool.give(a);
        let b = pool.take(50);
        assert!(b.is_empty() && b.capacity() >= 100);
        assert_eq!(b.as_ptr(), ptr, "the buffer given back is taken again");
        // Kept: two at most, and none larger than the cap.
        pool.give(b);
        pool.give(vec![1; 10]);
        pool.give(vec![1; 10]);
        pool.give(Vec::with_capacity(5000));
        assert_eq!(pool.free.lock().unwrap().len(), 2);
        assert!(pool.free.lock().unwrap().iter().all(|b| b.is_empty()));
        // The default pool keeps nothing.
        let none = BufferPool::default();
        none.give(vec![1; 10]);
        assert!(none.free.lock().unwrap().is_empty());
    }
}
