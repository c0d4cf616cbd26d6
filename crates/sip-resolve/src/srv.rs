//! RFC 2782 ordering of SRV records: by priority, then weighted random choice.

use crate::Srv;

/// Orders `records` for trying one after the other (RFC 2782, "Usage rules"):
/// lowest priority first; within one priority, repeatedly pick a record with
/// probability proportional to its weight among those not yet picked. Records of
/// weight 0 are put first in the running sum, so they keep a small chance of
/// being chosen when others have weight, as RFC 2782 asks.
///
/// `random` is called once per pick among records whose weights sum to more than 0;
/// its value is reduced modulo the sum plus one.
pub(crate) fn order_srv(
    mut records: Vec<Srv>,
    random: &mut (dyn FnMut() -> u32 + Send),
) -> Vec<Srv> {
    // stable: records of equal priority and weight 0 keep the order DNS gave
    records.sort_by_key(|r| (r.priority, r.weight != 0));
    let mut out = Vec::with_capacity(records.len());
    let mut rest = records.into_iter().peekable();
    while let Some(first) = rest.next() {
        let priority = first.priority;
        let mut group = vec![first];
        while let Some(next) = rest.next_if(|r| r.priority == priority) {
            group.push(next);
        }
        while !group.is_empty() {
            let total: u64 = group.iter().map(|r| u64::from(r.weight)).sum();
            let pick = if total == 0 {
                0
            } else {
                u64::from(random()) % (total + 1)
            };
            let mut running = 0u64;
            let index = group
                .iter()
                .position(|r| {
                    running += u64::from(r.weight);
                    running >= pick
                })
                .unwrap_or(0);
            out.push(group.remove(index));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port: 5060,
            target: target.to_owned(),
        }
    }

    fn targets(records: &[Srv]) -> Vec<&str> {
        records.iter().map(|r| r.target.as_str()).collect()
    }

    #[test]
    fn priority_orders_before_weight() {
        let mut random = || 0u32;
        let out = order_srv(
            vec![srv(20, 100, "c"), srv(10, 0, "a"), srv(10, 5, "b")],
            &mut random,
        );
        assert_eq!(targets(&out), ["a", "b", "c"]);
    }

    #[test]
    fn weights_pick_by_running_sum() {
        // weights 10, 30, 60 (running sums 10, 40, 100).
        let records = vec![srv(1, 10, "a"), srv(1, 30, "b"), srv(1, 60, "c")];
        // 50 % 101 = 50 -> c; then a,b sums 10,40: 25 % 41 = 25 -> b; then a.
        let mut values = vec![50u32, 25].into_iter();
        let mut random = move || values.next().unwrap_or(0);
        assert_eq!(
            targets(&order_srv(records.clone(), &mut random)),
            ["c", "b", "a"]
        );
        // 5 -> a; then b,c sums 30,90: 31 -> c; then b.
        let mut values = vec![5u32, 31].into_iter();
        let mut random = move || values.next().unwrap_or(0);
        assert_eq!(targets(&order_srv(records, &mut random)), ["a", "c", "b"]);
    }

    #[test]
    fn zero_weight_is_chosen_only_on_zero() {
        let records = vec![srv(1, 50, "heavy"), srv(1, 0, "zero")];
        let mut random = || 0u32;
        assert_eq!(
            targets(&order_srv(records.clone(), &mut random)),
            ["zero", "heavy"]
        );
        let mut random = || 1u32;
        assert_eq!(targets(&order_srv(records, &mut random)), ["heavy", "zero"]);
    }

    #[test]
    fn weighted_choice_follows_the_weights() {
        // A deterministic spread of random values: the 3:1 weight shows in the counts.
        let mut seed = 0x1234_5678u32;
        let mut random = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let mut first_a = 0;
        for _ in 0..4000 {
            let out = order_srv(vec![srv(1, 75, "a"), srv(1, 25, "b")], &mut random);
            if out[0].target == "a" {
                first_a += 1;
            }
        }
        assert!(
            (2800..3200).contains(&first_a),
            "a first {first_a} times of 4000"
        );
    }

    #[test]
    fn all_zero_weights_keep_dns_order_without_randomness() {
        let mut random = || -> u32 { panic!("no randomness needed") };
        let out = order_srv(vec![srv(1, 0, "x"), srv(1, 0, "y")], &mut random);
        assert_eq!(targets(&out), ["x", "y"]);
    }
}
