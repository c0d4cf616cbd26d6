//! The bounded sample FIFO.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::VecDeque;

use media::SampleFifo;
use proptest::prelude::*;

#[test]
fn push_and_pop_in_order() {
    let mut fifo = SampleFifo::new(10);
    assert!(fifo.is_empty());
    fifo.push(&[1, 2, 3]);
    fifo.push(&[4]);
    assert_eq!(fifo.len(), 4);
    let mut out = [0i16; 3];
    assert_eq!(fifo.pop_into(&mut out), 3);
    assert_eq!(out, [1, 2, 3]);
    let mut out = [-1i16; 5];
    assert_eq!(fifo.pop_into(&mut out), 1);
    assert_eq!(out, [4, -1, -1, -1, -1], "the rest is untouched");
    assert!(fifo.is_empty());
    assert_eq!(fifo.overflowed(), 0);
}

#[test]
fn overflow_drops_the_oldest_and_counts() {
    let mut fifo = SampleFifo::new(5);
    fifo.push(&[1, 2, 3, 4]);
    fifo.push(&[5, 6, 7]);
    assert_eq!(fifo.len(), 5);
    assert_eq!(fifo.overflowed(), 2);
    let mut out = [0i16; 5];
    fifo.pop_into(&mut out);
    assert_eq!(out, [3, 4, 5, 6, 7]);
    // A push longer than the capacity keeps its newest samples.
    fifo.push(&[1, 2]);
    fifo.push(&(10..20).collect::<Vec<i16>>());
    assert_eq!(fifo.overflowed(), 2 + 2 + 5);
    let mut out = [0i16; 5];
    assert_eq!(fifo.pop_into(&mut out), 5);
    assert_eq!(out, [15, 16, 17, 18, 19]);
    // clear() is not an overflow.
    fifo.push(&[1, 2, 3]);
    fifo.clear();
    assert!(fifo.is_empty());
    assert_eq!(fifo.overflowed(), 9);
    assert_eq!(fifo.capacity(), 5);
}

#[test]
fn a_zero_capacity_fifo_drops_everything() {
    let mut fifo = SampleFifo::new(0);
    fifo.push(&[1, 2, 3]);
    assert!(fifo.is_empty());
    assert_eq!(fifo.overflowed(), 3);
    assert_eq!(fifo.pop_into(&mut [0; 4]), 0);
}

proptest! {
    /// Any sequence of pushes and pops behaves as a VecDeque trimmed from the front.
    #[test]
    fn agrees_with_a_model(
        capacity in 0usize..64,
        operations in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<i16>(), 0..80).prop_map(Ok),
                (0usize..80).prop_map(Err),
            ],
            0..60,
        ),
    ) {
        let mut fifo = SampleFifo::new(capacity);
        let mut model: VecDeque<i16> = VecDeque::new();
        let mut dropped = 0u64;
        for operation in operations {
            match operation {
                Ok(samples) => {
                    fifo.push(&samples);
                    model.extend(samples.iter().copied());
                    while model.len() > capacity {
                        model.pop_front();
                        dropped += 1;
                    }
                }
                Err(len) => {
                    let mut out = vec![i16::MIN; len];
                    let got = fifo.pop_into(&mut out);
                    let expected: Vec<i16> = (0..len).map_while(|_| model.pop_front()).collect();
                    prop_assert_eq!(got, expected.len());
                    prop_assert_eq!(&out[..got], &expected[..]);
                    prop_assert!(out[got..].iter().all(|&x| x == i16::MIN));
                }
            }
            prop_assert_eq!(fifo.len(), model.len());
            prop_assert_eq!(fifo.overflowed(), dropped);
        }
    }
}
