//! Wildcard patterns of the policy language: `*` matches any run of characters (also none),
//! `?` exactly one character. Used for actions, resource ARNs, principal ARNs and `StringLike`.
//!
//! Matching is the classic two-pointer walk with one back-track point, so it is linear in
//! practice and O(pattern × text) in the worst case: a hostile pattern cannot make it explode.

/// Whether letters compare exactly or ignoring (Unicode simple) case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    Sensitive,
    Insensitive,
}

/// Does `text` match `pattern` (with `*` and `?` as wildcards)?
pub fn matches(pattern: &str, text: &str, case: Case) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let same = |p: char, t: char| match case {
        Case::Sensitive => p == t,
        Case::Insensitive => p == t || p.to_lowercase().eq(t.to_lowercase()),
    };
    let (mut p, mut t) = (0usize, 0usize);
    // Position after the last `*` seen in the pattern, and the text position it is matched up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || (pattern[p] != '*' && same(pattern[p], text[t]))) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p + 1, t));
            p += 1;
        } else if let Some((after_star, matched_to)) = star {
            // Let the last `*` swallow one more character and retry from there.
            p = after_star;
            t = matched_to + 1;
            star = Some((after_star, matched_to + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Does the pattern contain a wildcard character?
pub fn has_wildcard(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Obvious recursive definition, the oracle for the fast matcher.
    fn oracle(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| oracle(rest, &t[i..])),
            Some(('?', rest)) => !t.is_empty() && oracle(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && oracle(rest, &t[1..]),
        }
    }

    #[test]
    fn examples() {
        let s = Case::Sensitive;
        assert!(matches("*", "", s));
        assert!(matches("*", "anything", s));
        assert!(matches("vpc:*RouteEntry*", "vpc:CreateVpnRouteEntry", s));
        assert!(matches("vpc:*RouteEntry*", "vpc:DeleteVpnPbrRouteEntry", s));
        assert!(!matches("vpc:*RouteEntry*", "vpc:DescribeVpnRouteEntries", s));
        assert!(matches("vpc:*RouteEntries*", "vpc:DescribeVpnRouteEntries", s));
        assert!(matches("vpn-?", "vpn-1", s));
        assert!(!matches("vpn-?", "vpn-12", s));
        assert!(!matches("vpn-?", "vpn-", s));
        assert!(matches("a*b*c", "aXXbYYc", s));
        assert!(!matches("a*b*c", "aXXbYY", s));
        assert!(matches("**", "x", s));
        assert!(!matches("", "x", s));
        assert!(matches("", "", s));
    }

    #[test]
    fn case_rules() {
        assert!(!matches("vpc:describe*", "vpc:DescribeVpnGateway", Case::Sensitive));
        assert!(matches("vpc:describe*", "vpc:DescribeVpnGateway", Case::Insensitive));
        assert!(matches(
            "VPC:DESCRIBEVPNGATEWAY",
            "vpc:DescribeVpnGateway",
            Case::Insensitive
        ));
    }

    #[test]
    fn multibyte_question_mark_is_one_character() {
        assert!(matches("a?c", "aéc", Case::Sensitive));
        assert!(!matches("a??c", "aéc", Case::Sensitive));
    }

    #[test]
    fn hostile_pattern_finishes() {
        let pattern = "*a".repeat(200) + "b";
        let text = "a".repeat(5000);
        assert!(!matches(&pattern, &text, Case::Sensitive));
    }

    proptest! {
        #[test]
        fn agrees_with_oracle(p in "[ab*?]{0,8}", t in "[ab]{0,10}") {
            let pc: Vec<char> = p.chars().collect();
            let tc: Vec<char> = t.chars().collect();
            prop_assert_eq!(matches(&p, &t, Case::Sensitive), oracle(&pc, &tc));
        }

        #[test]
        fn literal_matches_only_itself(a in "[a-zA-Z:/-]{0,12}", b in "[a-zA-Z:/-]{0,12}") {
            prop_assert_eq!(matches(&a, &b, Case::Sensitive), a == b);
            prop_assert_eq!(matches(&a, &b, Case::Insensitive), a.to_lowercase() == b.to_lowercase());
        }

        #[test]
        fn prefix_star_matches_every_extension(a in "[a-z:]{0,8}", rest in "\\PC{0,8}") {
            let pattern = format!("{a}*");
            let text = format!("{a}{rest}");
            prop_assert!(matches(&pattern, &text, Case::Sensitive));
        }
    }
}
