//! Apache's `ap_escape_logitem` (httpd `server/util.c`), byte for byte.
//!
//! A byte is escaped iff it is a control character (0x01–0x1f, 0x7f), `"`,
//! `\`, or not ASCII (0x80 and up, so UTF-8 is escaped byte by byte). NUL,
//! which Apache never sees inside a C string, is escaped as `\x00` too.
//! BS, HT, LF, VT and CR get their C escapes; everything else escaped becomes
//! `\x` and two lower-case hex digits. Space and printable ASCII pass as is.

/// `true` for the bytes that must be escaped (httpd's `T_ESCAPE_LOGITEM`, plus NUL).
const ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b < 0x20 || b == b'"' as usize || b == b'\\' as usize || b >= 0x7f;
        b += 1;
    }
    table
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `item` to `out`, escaped as Apache's `ap_escape_logitem` does.
///
/// Runs of bytes that need no escaping are copied with one `extend`.
pub fn escape_into(out: &mut Vec<u8>, item: &[u8]) {
    out.reserve(item.len());
    let mut rest = item;
    while let Some(at) = rest.iter().position(|&b| ESCAPED[usize::from(b)]) {
        let (safe, tail) = rest.split_at(at);
        out.extend_from_slice(safe);
        let Some((&b, tail)) = tail.split_first() else {
            break;
        };
        push_escaped(out, b);
        rest = tail;
    }
    out.extend_from_slice(rest);
}

fn push_escaped(out: &mut Vec<u8>, b: u8) {
    let short = match b {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        b'\t' => b't',
        b'\n' => b'n',
        0x0b => b'v',
        b'\r' => b'r',
        _ => {
            let hex = [
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0x0f)],
            ];
            out.extend_from_slice(&hex);
            return;
        }
    };
    out.extend_from_slice(&[b'\\', short]);
}

#[cfg(test)]
mod tests {
    use super::escape_into;

    fn escaped(item: &[u8]) -> String {
        let mut out = Vec::new();
        escape_into(&mut out, item);
        String::from_utf8(out).expect("escaped output is ASCII")
    }

    /// A straightforward transcription of httpd's `ap_escape_logitem`.
    fn reference(item: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in item {
            let c = char::from(b);
            let apache_escapes = b != 0
                && (!(c.is_ascii_graphic() || c == ' ')
                    || c == '"'
                    || c == '\\'
                    || c.is_ascii_control());
            if !apache_escapes && b != 0 {
                out.push(b);
                continue;
            }
            match b {
                0x08 => out.extend_from_slice(b"\\b"),
                0x0a => out.extend_from_slice(b"\\n"),
                0x0d => out.extend_from_slice(b"\\r"),
                0x09 => out.extend_from_slice(b"\\t"),
                0x0b => out.extend_from_slice(b"\\v"),
                b'\\' | b'"' => out.extend_from_slice(&[b'\\', b]),
                _ => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            }
        }
        out
    }

    #[test]
    fn every_row_of_the_table() {
        let rows: &[(&[u8], &str)] = &[
            (b"\"", r#"\""#),
            (b"\\", r"\\"),
            (b"\x08", r"\b"),
            (b"\t", r"\t"),
            (b"\n", r"\n"),
            (b"\x0b", r"\v"),
            (b"\r", r"\r"),
            (b"\x0c", r"\x0c"),
            (b"\x01", r"\x01"),
            (b"\x1f", r"\x1f"),
            (b"\x7f", r"\x7f"),
            (b"\x00", r"\x00"),
            (b"\x80", r"\x80"),
            (b"\xff", r"\xff"),
            ("é".as_bytes(), r"\xc3\xa9"),
            ("日本".as_bytes(), r"\xe6\x97\xa5\xe6\x9c\xac"),
            (b" ", " "),
            (b"", ""),
            (b"GET /a?b=c&d=%20e HTTP/1.1", "GET /a?b=c&d=%20e HTTP/1.1"),
            (
                b"Mozilla/5.0 (X11; Linux x86_64) ~!@#$%^&*()_+{}|:<>?`-=[];',./",
                "Mozilla/5.0 (X11; Linux x86_64) ~!@#$%^&*()_+{}|:<>?`-=[];',./",
            ),
        ];
        for (input, want) in rows {
            assert_eq!(escaped(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn quote_cannot_end_a_quoted_field() {
        assert_eq!(escaped(b"evil\" 200 1 \"x\\"), r#"evil\" 200 1 \"x\\"#);
    }

    #[test]
    fn matches_the_reference_on_every_byte() {
        for b in 0..=255u8 {
            let mut out = Vec::new();
            escape_into(&mut out, &[b]);
            assert_eq!(out, reference(&[b]), "byte {b:#04x}");
        }
    }

    #[test]
    fn matches_the_reference_on_a_long_mixed_string() {
        // Every byte value, in runs of safe bytes of varying length between them.
        let mut input = Vec::new();
        for b in 0..=255u8 {
            input.extend(std::iter::repeat_n(b'a' + b % 26, usize::from(b % 7)));
            input.push(b);
            input.push(255 - b);
        }
        input.extend_from_slice("café naïve ünïcödé \"q\" \\ end".as_bytes());
        let mut out = b"prefix ".to_vec();
        escape_into(&mut out, &input);
        let mut want = b"prefix ".to_vec();
        want.extend(reference(&input));
        assert_eq!(out, want);
    }
}
