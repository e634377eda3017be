//! JSONP polling: long-polling for a page that cannot use
//! `XMLHttpRequest` (engine.io-client 1.x–5.x with `forceJSONP`, or
//! without XHR). The session is an ordinary polling session; only the
//! wrapping differs. A GET with `j=N` in its query is answered with a
//! script, `___eio[N]("<payload as a JSON string>");`, which calls the
//! page's callback; a POST comes from a hidden form, its payload in the
//! form field `d` with newlines escaped by the client.
//!
//! Served for both protocol revisions, as the reference server does
//! (`engine.allow_jsonp`). A v3 JSONP session always sends binaries as
//! base64 text: a script carries strings only.

use bytes::Bytes;

/// The `Content-Type` of a JSONP answer: a script. (The reference sends
/// `text/plain`, which a browser refuses to run under `nosniff`.)
pub(crate) const CONTENT_TYPE: &str = "text/javascript; charset=UTF-8";

/// Why a JSONP POST body is not a payload.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum FormError {
    #[error("no `d` field in the form")]
    Missing,
    #[error("more than one `d` field in the form")]
    Repeated,
}

/// The callback index of a request's `j` parameter: its digits, once
/// percent-decoded, as the reference keeps them (anything else is dropped,
/// so the answer can only ever call `___eio[<digits>]`).
pub(crate) fn callback_index(j: &str) -> String {
    let decoded: String = form_urlencoded::parse(format!("j={j}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    decoded.chars().filter(char::is_ascii_digit).collect()
}

/// A GET's answer: `payload` (a text payload) as a call of the page's
/// callback number `index`. The string is JSON, with U+2028 and U+2029
/// escaped too: JSON allows them raw, but older JavaScript engines end a
/// string literal there.
pub(crate) fn wrap(index: &str, payload: &str) -> Bytes {
    let json = serde_json::Value::from(payload).to_string();
    let json = if json.contains(['\u{2028}', '\u{2029}']) {
        json.replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029")
    } else {
        json
    };
    let mut out = String::with_capacity(json.len() + index.len() + 10);
    out.push_str("___eio[");
    out.push_str(index);
    out.push_str("](");
    out.push_str(&json);
    out.push_str(");");
    Bytes::from(out)
}

/// A POST's payload: the form's `d` field, its newlines unescaped.
///
/// The client escapes each `\n` (backslash, n) already in the payload as
/// backslash, backslash, n, and each newline as backslash, n, because some
/// browsers turn a form's newlines into CRLF. This undoes both, as the
/// reference does.
pub(crate) fn form_payload(body: &[u8]) -> Result<String, FormError> {
    let mut found = None;
    for (key, value) in form_urlencoded::parse(body) {
        if key == "d" {
            if found.is_some() {
                return Err(FormError::Repeated);
            }
            found = Some(value.into_owned());
        }
    }
    let data = found.ok_or(FormError::Missing)?;
    Ok(unescape_newlines(&data))
}

/// Undoes the client's newline escaping (see [`form_payload`]), as the
/// reference's two replacements do, in one pass: backslash, n is a
/// newline, unless a backslash precedes it, and then the two backslashes
/// and the n stand for backslash, n.
fn unescape_newlines(data: &str) -> String {
    let mut out = String::with_capacity(data.len());
    let mut rest = data;
    while let Some(at) = rest.find("\\n") {
        match rest[..at].strip_suffix('\\') {
            Some(before) => {
                out.push_str(before);
                out.push_str("\\n");
            }
            None => {
                out.push_str(&rest[..at]);
                out.push('\n');
            }
        }
        rest = &rest[at + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What engine.io-client's JSONP transport does to a payload before it
    /// puts it in the form's textarea.
    fn client_escape(data: &str) -> String {
        data.replace("\\n", "\\\n").replace('\n', "\\n")
    }

    #[test]
    fn the_callback_index_is_digits_only() {
        assert_eq!(callback_index("0"), "0");
        assert_eq!(callback_index("12"), "12");
        assert_eq!(callback_index("%31%32"), "12");
        assert_eq!(callback_index("1);alert(1)//"), "11");
        assert_eq!(callback_index("x"), "");
    }

    #[test]
    fn an_answer_is_a_call_with_a_json_string() {
        assert_eq!(
            &wrap("0", "0{\"sid\":\"a\"}")[..],
            br#"___eio[0]("0{\"sid\":\"a\"}");"#
        );
        // The v4 separator and other control characters are escaped as
        // JSON.stringify does, and so are the two line separators.
        assert_eq!(
            &wrap("3", "4a\u{1e}4b\n\u{2028}\u{2029}é")[..],
            "___eio[3](\"4a\\u001e4b\\n\\u2028\\u2029é\");".as_bytes()
        );
    }

    #[test]
    fn a_posted_form_gives_back_what_the_client_escaped() {
        for payload in [
            "4hello",
            "4two\nlines",
            "4a literal \\n in text",
            "4both \\n and \n and \\\\n",
            "4é ✓ 😀",
        ] {
            let escaped = client_escape(payload);
            let body: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("d", &escaped)
                .finish();
            assert_eq!(
                form_payload(body.as_bytes()).as_deref(),
                Ok(payload),
                "{payload:?}"
            );
        }
    }

    /// The reference's `data.replace(/(\\)?\\n/g, …).replace(/\\\\n/g, "\\n")`,
    /// written as the two scans the regular expressions make.
    fn reference_unescape(data: &str) -> String {
        let scan = |s: &[u8], keep_double: bool| {
            let mut out = Vec::new();
            let mut i = 0;
            while i < s.len() {
                if s[i..].starts_with(b"\\\\n") {
                    out.extend_from_slice(if keep_double { b"\\\\n" } else { b"\\n" });
                    i += 3;
                } else if keep_double && s[i..].starts_with(b"\\n") {
                    out.push(b'\n');
                    i += 2;
                } else {
                    out.push(s[i]);
                    i += 1;
                }
            }
            out
        };
        String::from_utf8(scan(&scan(data.as_bytes(), true), false)).unwrap()
    }

    #[test]
    fn unescaping_is_the_references_two_replacements() {
        // Every string of up to 7 of backslash, n, newline and a.
        let mut strings = vec![String::new()];
        for _ in 0..7 {
            let longer: Vec<String> = strings
                .iter()
                .filter(|s| s.len() == strings.last().map_or(0, String::len))
                .flat_map(|s| ['\\', 'n', '\n', 'a'].map(|c| format!("{s}{c}")))
                .collect();
            strings.extend(longer);
        }
        assert_eq!(strings.len(), (0..=7).map(|n| 4usize.pow(n)).sum::<usize>());
        for s in &strings {
            assert_eq!(unescape_newlines(s), reference_unescape(s), "{s:?}");
        }
    }

    #[test]
    fn a_form_without_one_d_is_refused() {
        assert_eq!(form_payload(b"x=1"), Err(FormError::Missing));
        assert_eq!(form_payload(b""), Err(FormError::Missing));
        assert_eq!(form_payload(b"d=1&d=2"), Err(FormError::Repeated));
        assert_eq!(form_payload(b"x=1&d=4hi").as_deref(), Ok("4hi"));
        assert_eq!(form_payload(b"d=4a+b%21").as_deref(), Ok("4a b!"));
    }
}
