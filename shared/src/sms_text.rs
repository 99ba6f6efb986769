//! SMS text: the GSM 03.38 default alphabet (with its extension table) when every character is
//! in it, else UCS-2; texts too long for one SMS are split into parts for UDH concatenation,
//! never splitting an escape pair or a UTF-16 surrogate pair. Received texts are read back with
//! the same tables ([`decode`]).

/// The GSM 03.38 default alphabet, by code.
const GSM_BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', 'Δ', '_',
    'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1b}', 'Æ', 'æ', 'ß', 'É', ' ', '!', '"', '#',
    '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', '0', '1', '2', '3', '4', '5', '6',
    '7', '8', '9', ':', ';', '<', '=', '>', '?', '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I',
    'J', 'K', 'L', 'M', 'N', 'O', 'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö',
    'Ñ', 'Ü', '§', '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à',
];

/// The extension table: characters sent as ESC (0x1B) and a code.
const GSM_EXTENSION: [(char, u8); 10] = [
    ('\u{c}', 0x0A),
    ('^', 0x14),
    ('{', 0x28),
    ('}', 0x29),
    ('\\', 0x2F),
    ('[', 0x3C),
    ('~', 0x3D),
    (']', 0x3E),
    ('|', 0x40),
    ('€', 0x65),
];

/// `data_coding` of the SMSC's default alphabet (GSM 03.38, one septet per octet here).
pub const DATA_CODING_GSM: u8 = 0x00;
/// `data_coding` of IA5, which SMSCs also use for the GSM default alphabet.
pub const DATA_CODING_IA5: u8 = 0x01;
/// `data_coding` of Latin-1 (ISO 8859-1).
pub const DATA_CODING_LATIN1: u8 = 0x03;
/// `data_coding` of UCS-2 (UTF-16 big-endian).
pub const DATA_CODING_UCS2: u8 = 0x08;

/// A text encoded for SMPP and cut into the payloads of its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// [`DATA_CODING_GSM`] or [`DATA_CODING_UCS2`].
    pub data_coding: u8,
    /// Each part's payload, without UDH; one element when the text fits one SMS.
    pub parts: Vec<Vec<u8>>,
}

fn gsm_codes(character: char) -> Option<Vec<u8>> {
    if character == '\u{1b}' {
        return None;
    }
    if let Some(code) = GSM_BASIC.iter().position(|&c| c == character) {
        return u8::try_from(code).ok().map(|code| vec![code]);
    }
    GSM_EXTENSION
        .iter()
        .find(|(c, _)| *c == character)
        .map(|(_, code)| vec![0x1B, *code])
}

/// Groups `units` (each character's code units, kept whole) into chunks of at most `limit`.
fn chunk(units: Vec<Vec<u8>>, limit: usize) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    let mut current = Vec::new();
    for unit in units {
        if current.len() + unit.len() > limit {
            parts.push(std::mem::take(&mut current));
        }
        current.extend(unit);
    }
    if !current.is_empty() || parts.is_empty() {
        parts.push(current);
    }
    parts
}

/// Encodes `text`: GSM (160 per SMS, 153 per part) when it can, else UCS-2 (70 per SMS, 67
/// per part; limits in characters, a UTF-16 pair counting two).
pub fn encode(text: &str) -> Encoded {
    let gsm: Option<Vec<Vec<u8>>> = text.chars().map(gsm_codes).collect();
    if let Some(units) = gsm {
        let total: usize = units.iter().map(Vec::len).sum();
        let limit = if total <= 160 { 160 } else { 153 };
        return Encoded {
            data_coding: DATA_CODING_GSM,
            parts: chunk(units, limit),
        };
    }
    let units: Vec<Vec<u8>> = text
        .chars()
        .map(|character| {
            let mut buffer = [0u16; 2];
            character
                .encode_utf16(&mut buffer)
                .iter()
                .flat_map(|unit| unit.to_be_bytes())
                .collect()
        })
        .collect();
    let total: usize = units.iter().map(Vec::len).sum();
    let limit = if total <= 140 { 140 } else { 134 };
    Encoded {
        data_coding: DATA_CODING_UCS2,
        parts: chunk(units, limit),
    }
}

/// How a received text was read, named as the `inbound.sms` event names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    /// The GSM 03.38 default alphabet and its extension table.
    Gsm7,
    /// UCS-2, read as UTF-16 (surrogate pairs included).
    Ucs2,
    /// ISO 8859-1: `data_coding` 3, and the bytes of any coding not known here.
    Latin1,
}

impl TextEncoding {
    /// `gsm7`, `ucs2` or `latin1`.
    pub fn as_str(self) -> &'static str {
        match self {
            TextEncoding::Gsm7 => "gsm7",
            TextEncoding::Ucs2 => "ucs2",
            TextEncoding::Latin1 => "latin1",
        }
    }
}

/// Reads a received payload (without UDH) by its `data_coding`: GSM 03.38 for 0 and 1, UCS-2
/// for 8, Latin-1 for 3 and for any other coding, whose bytes are at least kept visible.
pub fn decode(data_coding: u8, bytes: &[u8]) -> (String, TextEncoding) {
    match data_coding {
        DATA_CODING_GSM | DATA_CODING_IA5 => (decode_gsm(bytes), TextEncoding::Gsm7),
        DATA_CODING_UCS2 => (decode_ucs2(bytes), TextEncoding::Ucs2),
        _ => (
            bytes.iter().copied().map(char::from).collect(),
            TextEncoding::Latin1,
        ),
    }
}

/// One septet per octet, as SMPP carries it. An escape before a code the extension table does
/// not have stands for the basic character of that code, and a lone escape for a space, as
/// GSM 03.38 asks of a receiver; an octet above 0x7F is no septet and reads as U+FFFD.
fn decode_gsm(bytes: &[u8]) -> String {
    let basic = |code: u8| match GSM_BASIC.get(usize::from(code)) {
        Some('\u{1b}') => ' ',
        Some(character) => *character,
        None => char::REPLACEMENT_CHARACTER,
    };
    let mut text = String::with_capacity(bytes.len());
    let mut codes = bytes.iter().copied();
    while let Some(code) = codes.next() {
        if code != 0x1B {
            text.push(basic(code));
            continue;
        }
        let character = match codes.next() {
            Some(escaped) => GSM_EXTENSION
                .iter()
                .find(|(_, extension)| *extension == escaped)
                .map_or_else(|| basic(escaped), |(character, _)| *character),
            None => ' ',
        };
        text.push(character);
    }
    text
}

/// UTF-16 big-endian; an unpaired surrogate or a last odd octet reads as U+FFFD.
fn decode_ucs2(bytes: &[u8]) -> String {
    let pairs = bytes.chunks_exact(2);
    let odd = !pairs.remainder().is_empty();
    let units = pairs.map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
    let mut text: String = char::decode_utf16(units)
        .map(|unit| unit.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    if odd {
        text.push(char::REPLACEMENT_CHARACTER);
    }
    text
}

/// The UDH of part `sequence` (1-based) of `total`, concatenation with an 8-bit reference.
pub fn concatenation_header(reference: u8, total: u8, sequence: u8) -> [u8; 6] {
    [0x05, 0x00, 0x03, reference, total, sequence]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_gsm_text_is_one_part_with_escapes() {
        let encoded = encode("Price: 5€ [ok]");
        assert_eq!(encoded.data_coding, DATA_CODING_GSM);
        assert_eq!(encoded.parts.len(), 1);
        assert_eq!(&encoded.parts[0][..7], b"Price: ");
        assert_eq!(&encoded.parts[0][7..10], &[b'5', 0x1B, 0x65]);
        assert_eq!(encoded.parts[0].len(), 17);
    }

    #[test]
    fn a_300_character_text_is_split_in_153_septet_parts() {
        let text = "a".repeat(300);
        let encoded = encode(&text);
        assert_eq!(encoded.data_coding, DATA_CODING_GSM);
        assert_eq!(
            encoded.parts.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![153, 147]
        );
        let exactly_160 = encode(&"b".repeat(160));
        assert_eq!(exactly_160.parts.len(), 1);
    }

    #[test]
    fn other_scripts_go_as_ucs2_without_splitting_pairs() {
        let encoded = encode("Привет 👋");
        assert_eq!(encoded.data_coding, DATA_CODING_UCS2);
        assert_eq!(encoded.parts.len(), 1);
        let decoded = String::from_utf16(
            &encoded.parts[0]
                .chunks(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                .collect::<Vec<_>>(),
        );
        assert_eq!(decoded.expect("valid UTF-16"), "Привет 👋");
        let long = encode(
            &"я"
                .repeat(66)
                .chars()
                .chain(std::iter::once('👋'))
                .chain("я".repeat(10).chars())
                .collect::<String>(),
        );
        assert!(
            long.parts
                .iter()
                .all(|part| part.len() <= 134 && part.len() % 2 == 0)
        );
        assert!(long.parts.len() == 2);
        let escape_at_edge = encode(&format!("{}€{}", "c".repeat(152), "c".repeat(10)));
        assert_eq!(
            escape_at_edge
                .parts
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>(),
            vec![152, 12],
            "ESC and its code stay together"
        );
    }

    #[test]
    fn gsm_is_read_with_the_sending_tables_escapes_included() {
        for text in [
            "Price: 5€ [ok] {a|b} ~^\\",
            "@£$¥ èé ΔΦΓ ÄÖÑÜ§ äöñüà",
            "Hello\r\nworld",
        ] {
            let encoded = encode(text);
            assert_eq!(encoded.data_coding, DATA_CODING_GSM, "{text}");
            let bytes = encoded.parts.concat();
            assert_eq!(
                decode(DATA_CODING_GSM, &bytes),
                (text.to_owned(), TextEncoding::Gsm7)
            );
        }
        assert_eq!(decode(DATA_CODING_IA5, b"ok").1, TextEncoding::Gsm7);
        assert_eq!(
            decode(DATA_CODING_GSM, &[b'a', 0x1B, b'A', 0x1B, 0x1B, b'b', 0x1B]).0,
            "aA b ",
            "unknown escapes read as the basic character, reserved and lone ones as a space"
        );
        assert_eq!(decode(DATA_CODING_GSM, &[b'x', 0x80]).0, "x\u{fffd}");
    }

    #[test]
    fn ucs2_keeps_surrogate_pairs_and_other_codings_read_as_latin1() {
        let text = "Γειά σου κόσμε 👋🏽 €";
        let bytes = encode(text).parts.concat();
        assert_eq!(
            decode(DATA_CODING_UCS2, &bytes),
            (text.to_owned(), TextEncoding::Ucs2)
        );
        assert_eq!(
            decode(DATA_CODING_UCS2, &[0xD8, 0x3D, 0x00, 0x41, 0x00]).0,
            "\u{fffd}A\u{fffd}",
            "an unpaired surrogate and an odd octet"
        );
        assert_eq!(
            decode(DATA_CODING_LATIN1, &[0x63, 0x61, 0x66, 0xE9]),
            ("café".to_owned(), TextEncoding::Latin1)
        );
        assert_eq!(
            decode(0x04, &[0xFF, 0x41]),
            ("ÿA".to_owned(), TextEncoding::Latin1)
        );
        assert_eq!(TextEncoding::Ucs2.as_str(), "ucs2");
    }
}
