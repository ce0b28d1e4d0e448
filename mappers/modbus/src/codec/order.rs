//! Byte and word order: how the bytes of a multi-register value are laid out in registers.
//!
//! Values are handled as a canonical big-endian byte string, most significant byte first
//! (`A B C D` for 32 bits). A device stores it in registers in one of four orders:
//!
//! | order  | registers of `0xAABBCCDD` | KubeEdge                              |
//! |--------|---------------------------|---------------------------------------|
//! | `ABCD` | `AABB CCDD`               | `isSwap: false, isRegisterSwap: false` |
//! | `BADC` | `BBAA DDCC`               | `isSwap: true`                         |
//! | `CDAB` | `CCDD AABB`               | `isRegisterSwap: true`                 |
//! | `DCBA` | `DDCC BBAA`               | both                                   |
//!
//! For 64-bit values `CDAB` reverses all four registers and `BADC` swaps the bytes inside each
//! one, exactly as KubeEdge's mapper does (`SwitchRegister` then `SwitchByte`); `DCBA` is then
//! the fully little-endian layout. Strings and byte arrays go through the same transform.

use std::fmt;

/// Where the bytes of a value go in its registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ByteOrder {
    /// Big-endian words, most significant word first (the Modbus convention).
    #[default]
    Abcd,
    /// Bytes swapped inside each register.
    Badc,
    /// Register order reversed (least significant word first).
    Cdab,
    /// Both: fully little-endian.
    Dcba,
}

impl ByteOrder {
    /// Every order.
    pub const ALL: [ByteOrder; 4] = [
        ByteOrder::Abcd,
        ByteOrder::Badc,
        ByteOrder::Cdab,
        ByteOrder::Dcba,
    ];

    /// The order KubeEdge's `isSwap` (bytes inside each register) and `isRegisterSwap`
    /// (register order) describe.
    pub fn from_swaps(swap_bytes: bool, swap_words: bool) -> ByteOrder {
        match (swap_bytes, swap_words) {
            (false, false) => ByteOrder::Abcd,
            (true, false) => ByteOrder::Badc,
            (false, true) => ByteOrder::Cdab,
            (true, true) => ByteOrder::Dcba,
        }
    }

    /// Whether the bytes inside each register are swapped (KubeEdge `isSwap`).
    pub fn swaps_bytes(self) -> bool {
        matches!(self, ByteOrder::Badc | ByteOrder::Dcba)
    }

    /// Whether the register order is reversed (KubeEdge `isRegisterSwap`).
    pub fn swaps_words(self) -> bool {
        matches!(self, ByteOrder::Cdab | ByteOrder::Dcba)
    }

    /// Parses `ABCD`, `BADC`, `CDAB`, `DCBA` (any case), or `big` / `little` (endian).
    pub fn parse(name: &str) -> Option<ByteOrder> {
        match crate::table::normalize(name).as_str() {
            "abcd" | "big" | "bigendian" => Some(ByteOrder::Abcd),
            "badc" => Some(ByteOrder::Badc),
            "cdab" => Some(ByteOrder::Cdab),
            "dcba" | "little" | "littleendian" => Some(ByteOrder::Dcba),
            _ => None,
        }
    }

    /// The canonical (big-endian) bytes of a value stored in `words`.
    pub fn bytes_from_words(self, words: &[u16]) -> Vec<u8> {
        let mut ordered = words.to_vec();
        if self.swaps_words() {
            ordered.reverse();
        }
        ordered
            .into_iter()
            .flat_map(|word| {
                let word = if self.swaps_bytes() {
                    word.swap_bytes()
                } else {
                    word
                };
                word.to_be_bytes()
            })
            .collect()
    }

    /// The registers that store the canonical (big-endian) `bytes`; an odd length is padded
    /// with a zero byte at the end.
    pub fn words_from_bytes(self, bytes: &[u8]) -> Vec<u16> {
        let mut words: Vec<u16> = bytes
            .chunks(2)
            .map(|pair| {
                let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
                if self.swaps_bytes() {
                    word.swap_bytes()
                } else {
                    word
                }
            })
            .collect();
        if self.swaps_words() {
            words.reverse();
        }
        words
    }
}

impl fmt::Display for ByteOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ByteOrder::Abcd => "ABCD",
            ByteOrder::Badc => "BADC",
            ByteOrder::Cdab => "CDAB",
            ByteOrder::Dcba => "DCBA",
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_four_orders_of_a_32_bit_value() {
        let bytes = [0xAA, 0xBB, 0xCC, 0xDD];
        let expect = [
            (ByteOrder::Abcd, [0xAABB, 0xCCDD]),
            (ByteOrder::Badc, [0xBBAA, 0xDDCC]),
            (ByteOrder::Cdab, [0xCCDD, 0xAABB]),
            (ByteOrder::Dcba, [0xDDCC, 0xBBAA]),
        ];
        for (order, words) in expect {
            assert_eq!(order.words_from_bytes(&bytes), words, "{order}");
            assert_eq!(order.bytes_from_words(&words), bytes, "{order}");
        }
    }

    #[test]
    fn sixty_four_bit_orders_match_kubeedge_switch_register_then_switch_byte() {
        let bytes = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(
            ByteOrder::Cdab.words_from_bytes(&bytes),
            [0x0708, 0x0506, 0x0304, 0x0102]
        );
        assert_eq!(
            ByteOrder::Badc.words_from_bytes(&bytes),
            [0x0201, 0x0403, 0x0605, 0x0807]
        );
        // DCBA over 8 bytes is the little-endian layout of the whole value.
        let value = u64::from_be_bytes(bytes);
        let words = ByteOrder::Dcba.words_from_bytes(&bytes);
        let little: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(little, value.to_le_bytes());
    }

    #[test]
    fn kubeedge_flags_and_names_parse() {
        assert_eq!(ByteOrder::from_swaps(false, false), ByteOrder::Abcd);
        assert_eq!(ByteOrder::from_swaps(true, false), ByteOrder::Badc);
        assert_eq!(ByteOrder::from_swaps(false, true), ByteOrder::Cdab);
        assert_eq!(ByteOrder::from_swaps(true, true), ByteOrder::Dcba);
        for order in ByteOrder::ALL {
            assert_eq!(ByteOrder::parse(&order.to_string()), Some(order));
            assert_eq!(
                ByteOrder::from_swaps(order.swaps_bytes(), order.swaps_words()),
                order
            );
        }
        assert_eq!(ByteOrder::parse("cdab"), Some(ByteOrder::Cdab));
        assert_eq!(ByteOrder::parse("little_endian"), Some(ByteOrder::Dcba));
        assert_eq!(ByteOrder::parse("ABDC"), None);
    }

    #[test]
    fn odd_byte_strings_are_padded_with_zero() {
        assert_eq!(ByteOrder::Abcd.words_from_bytes(b"abc"), [0x6162, 0x6300]);
        assert_eq!(ByteOrder::Badc.words_from_bytes(b"abc"), [0x6261, 0x0063]);
    }

    proptest! {
        #[test]
        fn words_round_trip_through_bytes(words in proptest::collection::vec(any::<u16>(), 0..8),
                                          order in proptest::sample::select(ByteOrder::ALL.to_vec())) {
            let bytes = order.bytes_from_words(&words);
            prop_assert_eq!(bytes.len(), words.len() * 2);
            prop_assert_eq!(order.words_from_bytes(&bytes), words);
        }
    }
}
