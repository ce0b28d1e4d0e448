//! Request coalescing: the properties read in one cycle become the fewest read requests the
//! protocol allows, and each response is split back per property. Pure: no I/O.
//!
//! Properties are grouped by table and sorted by address; a property joins the current
//! request when the hole before it is at most `max_gap` items and the request stays within
//! the per-request limit (125 registers, 2000 bits, or lower configured limits). For properties
//! that do not overlap, this greedy merge gives the fewest requests (a property test compares
//! it with an exhaustive search). Overlapping properties are allowed and read once.

use std::ops::Range;

use crate::table::Table;

/// The default largest hole, in registers or bits, bridged to merge two reads.
pub const DEFAULT_MAX_GAP: u16 = 16;

/// How reads may be merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimits {
    /// Most registers per request (1–125).
    pub max_registers: u16,
    /// Most coils or discrete inputs per request (1–2000).
    pub max_bits: u16,
    /// Largest run of unused registers or bits a request may span between two properties.
    pub max_gap: u16,
}

impl Default for PlanLimits {
    fn default() -> Self {
        PlanLimits {
            max_registers: Table::HoldingRegisters.max_read(),
            max_bits: Table::Coils.max_read(),
            max_gap: DEFAULT_MAX_GAP,
        }
    }
}

impl PlanLimits {
    /// The most items one request of `table` may ask for.
    pub fn max_items(&self, table: Table) -> u16 {
        if table.holds_bits() {
            self.max_bits
        } else {
            self.max_registers
        }
    }
}

/// The items one property occupies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    /// The table.
    pub table: Table,
    /// The first address.
    pub start: u16,
    /// How many registers or bits (at least 1).
    pub count: u16,
}

impl Span {
    /// One past the last address (may be 65536).
    pub fn end(&self) -> u32 {
        u32::from(self.start) + u32::from(self.count)
    }
}

/// One read request and the properties it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    /// The table read.
    pub table: Table,
    /// The first address.
    pub start: u16,
    /// How many registers or bits.
    pub count: u16,
    /// Indices (into the planned spans) of the properties this request serves, by address.
    pub members: Vec<usize>,
}

impl ReadRequest {
    /// A request for exactly one span.
    pub fn single(index: usize, span: &Span) -> ReadRequest {
        ReadRequest {
            table: span.table,
            start: span.start,
            count: span.count,
            members: vec![index],
        }
    }

    /// Where a member's items are in this request's response.
    pub fn slice_of(&self, span: &Span) -> Range<usize> {
        let from = usize::from(span.start.saturating_sub(self.start));
        from..from + usize::from(span.count)
    }

    /// The items of `span` in `response` (`None` when the response is too short).
    pub fn items_of<'a, T>(&self, span: &Span, response: &'a [T]) -> Option<&'a [T]> {
        response.get(self.slice_of(span))
    }

    /// This request split into one request per member (after a device refused the merged
    /// read, e.g. because a bridged hole is not mapped).
    pub fn split(&self, spans: &[Span]) -> Vec<ReadRequest> {
        self.members
            .iter()
            .filter_map(|&index| {
                spans
                    .get(index)
                    .map(|span| ReadRequest::single(index, span))
            })
            .collect()
    }
}

/// Plans the reads of `spans`: the fewest requests within `limits`, each span inside exactly
/// one request. Requests come out by table, then by address.
pub fn plan(spans: &[Span], limits: &PlanLimits) -> Vec<ReadRequest> {
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| (spans[i].table, spans[i].start, spans[i].count));
    let mut requests = Vec::new();
    let mut current: Option<(ReadRequest, u32)> = None;
    for index in order {
        let span = &spans[index];
        if let Some((request, end)) = current.as_mut() {
            let joins = request.table == span.table
                && u32::from(span.start) <= *end + u32::from(limits.max_gap)
                && span.end().max(*end) - u32::from(request.start)
                    <= u32::from(limits.max_items(span.table));
            if joins {
                *end = (*end).max(span.end());
                request.members.push(index);
                continue;
            }
        }
        if let Some(done) = current.take() {
            requests.push(finish(done));
        }
        current = Some((ReadRequest::single(index, span), span.end()));
    }
    requests.extend(current.map(finish));
    requests
}

fn finish((mut request, end): (ReadRequest, u32)) -> ReadRequest {
    // `end - start` never exceeds the per-request limit (≤ 2000), so it fits a u16.
    request.count = u16::try_from(end - u32::from(request.start)).unwrap_or(u16::MAX);
    request
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn holding(start: u16, count: u16) -> Span {
        Span {
            table: Table::HoldingRegisters,
            start,
            count,
        }
    }

    #[test]
    fn one_hundred_adjacent_registers_are_one_request() {
        let spans: Vec<Span> = (0..100).map(|i| holding(i, 1)).collect();
        let requests = plan(&spans, &PlanLimits::default());
        assert_eq!(requests.len(), 1);
        assert_eq!((requests[0].start, requests[0].count), (0, 100));
        assert_eq!(requests[0].members, (0..100).collect::<Vec<_>>());
        let response: Vec<u16> = (1000..1100).collect();
        assert_eq!(
            requests[0].items_of(&spans[42], &response),
            Some(&[1042u16][..])
        );
    }

    #[test]
    fn limits_split_requests() {
        // 100 float32 = 200 registers: 125 is the limit, and a float never straddles requests.
        let spans: Vec<Span> = (0..100).map(|i| holding(i * 2, 2)).collect();
        let requests = plan(&spans, &PlanLimits::default());
        assert_eq!(
            requests
                .iter()
                .map(|r| (r.start, r.count))
                .collect::<Vec<_>>(),
            [(0, 124), (124, 76)]
        );
        let small = PlanLimits {
            max_registers: 10,
            ..PlanLimits::default()
        };
        assert_eq!(plan(&spans, &small).len(), 20);
    }

    #[test]
    fn gaps_and_tables_separate_requests() {
        let spans = [
            holding(0, 1),
            holding(5, 1),
            holding(30, 2),
            Span {
                table: Table::InputRegisters,
                start: 1,
                count: 1,
            },
            Span {
                table: Table::Coils,
                start: 0,
                count: 1,
            },
            Span {
                table: Table::Coils,
                start: 17,
                count: 1,
            },
        ];
        let gap3 = PlanLimits {
            max_gap: 3,
            ..PlanLimits::default()
        };
        let summary = |limits: &PlanLimits| {
            plan(&spans, limits)
                .iter()
                .map(|r| (r.table, r.start, r.count, r.members.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            summary(&gap3),
            [
                (Table::Coils, 0, 1, vec![4]),
                (Table::Coils, 17, 1, vec![5]),
                (Table::HoldingRegisters, 0, 1, vec![0]),
                (Table::HoldingRegisters, 5, 1, vec![1]),
                (Table::HoldingRegisters, 30, 2, vec![2]),
                (Table::InputRegisters, 1, 1, vec![3]),
            ]
        );
        assert_eq!(
            summary(&PlanLimits::default()),
            [
                (Table::Coils, 0, 18, vec![4, 5]),
                (Table::HoldingRegisters, 0, 6, vec![0, 1]),
                (Table::HoldingRegisters, 30, 2, vec![2]),
                (Table::InputRegisters, 1, 1, vec![3]),
            ]
        );
    }

    #[test]
    fn overlapping_and_duplicate_spans_are_read_once() {
        let spans = [
            holding(10, 4),
            holding(11, 1),
            holding(10, 4),
            holding(12, 4),
        ];
        let requests = plan(&spans, &PlanLimits::default());
        assert_eq!(requests.len(), 1);
        assert_eq!((requests[0].start, requests[0].count), (10, 6));
        assert_eq!(requests[0].slice_of(&spans[3]), 2..6);
    }

    #[test]
    fn the_last_address_is_reachable() {
        let spans = [holding(65535, 1), holding(65532, 2)];
        let requests = plan(&spans, &PlanLimits::default());
        assert_eq!(requests.len(), 1);
        assert_eq!((requests[0].start, requests[0].count), (65532, 4));
    }

    #[test]
    fn a_merged_request_splits_into_its_members() {
        let spans = [holding(0, 2), holding(4, 1)];
        let merged = plan(&spans, &PlanLimits::default());
        assert_eq!(merged.len(), 1);
        let split = merged[0].split(&spans);
        assert_eq!(
            split,
            [
                ReadRequest::single(0, &spans[0]),
                ReadRequest::single(1, &spans[1])
            ]
        );
        assert_eq!(split[1].items_of(&spans[1], &[7u16]), Some(&[7u16][..]));
        assert_eq!(split[0].items_of(&spans[0], &[7u16]), None);
    }

    fn any_table() -> impl Strategy<Value = Table> {
        proptest::sample::select(Table::ALL.to_vec())
    }

    fn any_span() -> impl Strategy<Value = Span> {
        (any_table(), 0u16..400, 1u16..=8).prop_map(|(table, start, count)| Span {
            table,
            start,
            count,
        })
    }

    fn any_limits() -> impl Strategy<Value = PlanLimits> {
        (8u16..=125, 8u16..=2000, 0u16..=20).prop_map(|(max_registers, max_bits, max_gap)| {
            PlanLimits {
                max_registers,
                max_bits,
                max_gap,
            }
        })
    }

    /// Holding-register spans that do not overlap: (hole before, length) pairs.
    fn disjoint_spans() -> impl Strategy<Value = Vec<Span>> {
        proptest::collection::vec((0u16..=24, 1u16..=8), 0..40).prop_map(|pairs| {
            let mut next = 0u16;
            pairs
                .into_iter()
                .map(|(hole, count)| {
                    let span = holding(next + hole, count);
                    next += hole + count;
                    span
                })
                .collect()
        })
    }

    /// The fewest requests for sorted, disjoint spans of one table, by exhaustive search over
    /// contiguous groups.
    fn optimum(spans: &[Span], limits: &PlanLimits) -> usize {
        let n = spans.len();
        let feasible = |from: usize, to: usize| {
            spans[to].end() - u32::from(spans[from].start)
                <= u32::from(limits.max_items(spans[from].table))
                && (from..to).all(|i| {
                    u32::from(spans[i + 1].start) - spans[i].end() <= u32::from(limits.max_gap)
                })
        };
        let mut best = vec![usize::MAX; n + 1];
        best[0] = 0;
        for to in 0..n {
            for from in 0..=to {
                if best[from] != usize::MAX && feasible(from, to) {
                    best[to + 1] = best[to + 1].min(best[from] + 1);
                }
            }
        }
        best[n]
    }

    proptest! {
        #[test]
        fn every_span_is_inside_exactly_one_request(
            spans in proptest::collection::vec(any_span(), 0..60),
            limits in any_limits(),
        ) {
            let requests = plan(&spans, &limits);
            let mut seen = vec![0; spans.len()];
            for request in &requests {
                prop_assert!(request.count >= 1);
                prop_assert!(request.count <= limits.max_items(request.table));
                for &member in &request.members {
                    seen[member] += 1;
                    let span = spans[member];
                    prop_assert_eq!(span.table, request.table);
                    prop_assert!(span.start >= request.start);
                    prop_assert!(span.end() <= u32::from(request.start) + u32::from(request.count));
                }
            }
            prop_assert!(seen.iter().all(|&n| n == 1), "coverage {:?}", seen);
        }

        #[test]
        fn requests_have_no_hole_longer_than_the_gap_and_no_waste_at_the_edges(
            spans in proptest::collection::vec(any_span(), 1..60),
            limits in any_limits(),
        ) {
            for request in plan(&spans, &limits) {
                let base = u32::from(request.start);
                let mut covered = vec![false; usize::from(request.count)];
                for &member in &request.members {
                    for address in u32::from(spans[member].start)..spans[member].end() {
                        covered[(address - base) as usize] = true;
                    }
                }
                prop_assert!(covered.first() == Some(&true) && covered.last() == Some(&true));
                let mut hole = 0;
                for on in covered {
                    hole = if on { 0 } else { hole + 1 };
                    prop_assert!(hole <= limits.max_gap, "hole of {} in {:?}", hole, request);
                }
            }
        }

        #[test]
        fn disjoint_spans_get_the_fewest_requests(spans in disjoint_spans(), limits in any_limits()) {
            prop_assert_eq!(plan(&spans, &limits).len(), optimum(&spans, &limits));
        }

        #[test]
        fn adjacent_spans_fill_requests_to_the_limit(n in 1u16..=500, limits in any_limits()) {
            let spans: Vec<Span> = (0..n).map(|i| holding(i, 1)).collect();
            let expected = usize::from(n.div_ceil(limits.max_registers));
            prop_assert_eq!(plan(&spans, &limits).len(), expected);
        }
    }
}
