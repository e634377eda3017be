//! `@user` mentions: which members a message text names. Only members
//! count (a mention of anyone else notifies no one), never the sender, and
//! a name must stand alone: `@bob` in `hi @bob!` mentions bob, but not in
//! `mail@bob.example`'s `x@bob` (a letter before the `@`) nor as a prefix
//! of `@bobby`.

/// Whether `c` may be part of a user id next to a mention (so it cannot
/// end one or come right before its `@`).
fn word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

/// How many `@` of one text are looked at. Each compares the text with
/// every member's name, and a text may hold thousands of `@` (a group of
/// long, `@`-filled member ids would make one message cost billions of
/// byte comparisons, inside the writer every conversation shares).
pub const MAX_AT_SIGNS: usize = 32;

/// The members of `members` (other than `sender`) that `text` mentions, in
/// the order of `members`, at most `max`; only the first [`MAX_AT_SIGNS`]
/// `@` that may start a mention are looked at.
pub fn find(text: &str, sender: &str, members: &[String], max: usize) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut looked = 0;
    for (at, _) in text.match_indices('@') {
        if text[..at].chars().next_back().is_some_and(word_char) {
            continue;
        }
        looked += 1;
        if looked > MAX_AT_SIGNS {
            break;
        }
        let rest = &text[at + 1..];
        // The longest member name that stands alone here (`@bob-smith` is
        // bob-smith, not bob).
        let best = members
            .iter()
            .filter(|m| !m.is_empty() && rest.starts_with(m.as_str()))
            .filter(|m| !rest[m.len()..].chars().next().is_some_and(word_char))
            .max_by_key(|m| m.len());
        if let Some(member) = best
            && member != sender
            && !found.contains(member)
        {
            found.push(member.clone());
        }
    }
    found.sort_by_key(|m| members.iter().position(|x| x == m));
    found.truncate(max);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_so_many_at_signs_are_looked_at() {
        let members = members(&["alice", "bob", "carol"]);
        let noise = "@x ".repeat(MAX_AT_SIGNS);
        assert!(find(&format!("{noise}@bob"), "alice", &members, 10).is_empty());
        assert_eq!(
            find(&format!("@bob {noise}"), "alice", &members, 10),
            vec!["bob"]
        );
    }

    fn members(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_mention_names_a_member_standing_alone() {
        let m = members(&["alice", "bob", "bob-smith", "carol"]);
        assert_eq!(find("hi @bob!", "alice", &m, 10), ["bob"]);
        assert_eq!(find("@bob-smith, look", "alice", &m, 10), ["bob-smith"]);
        assert!(find("@bobby and x@carol", "alice", &m, 10).is_empty());
        assert!(find("@dave is no member", "alice", &m, 10).is_empty());
        assert!(find("talking to @alice myself", "alice", &m, 10).is_empty());
        assert_eq!(
            find("@carol @bob @carol", "alice", &m, 10),
            ["bob", "carol"]
        );
        assert_eq!(find("@carol @bob", "alice", &m, 1), ["bob"]);
        assert_eq!(find("é@bob @bob", "alice", &m, 10), ["bob"]);
    }
}
