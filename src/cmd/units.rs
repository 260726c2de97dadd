//! Durations, sizes and CPU amounts as Docker's flags take them: `500ms`, `1m30s`, `64M`,
//! `1.5G`, `0.5` CPUs; and a command line split into words as `--args` takes it.

/// Parses a Go-style duration (`300ms`, `5s`, `1m30s`, `1.5h`, `0`) into milliseconds. Units:
/// `ns`, `us` (`µs`), `ms`, `s`, `m`, `h`; below a millisecond rounds down.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("invalid duration {text:?}: {why} (e.g. 500ms, 5s, 1m30s, 1h)");
    let s = text.trim();
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(bad("empty"));
    }
    let mut rest = s;
    let mut total_ns: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| bad("missing unit"))?;
        if num_len == 0 {
            return Err(bad("expected a number"));
        }
        let (num, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let unit_ns: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad(&format!("unknown unit {unit:?}"))),
        };
        total_ns = total_ns
            .checked_add(scaled(num, unit_ns).ok_or_else(|| bad("not a number"))?)
            .ok_or_else(|| bad("too large"))?;
        rest = next;
    }
    u64::try_from(total_ns / 1_000_000).map_err(|_| bad("too large"))
}

/// `num` (decimal, at most one dot) times `unit`, truncated; `None` when malformed or huge.
fn scaled(num: &str, unit: u128) -> Option<u128> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') {
        return None;
    }
    let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut value = int.checked_mul(unit)?;
    if !frac.is_empty() {
        // Digits past 12 cannot matter at these units; more would overflow the power of ten.
        let frac = &frac[..frac.len().min(12)];
        let digits: u128 = frac.parse().ok()?;
        value = value.checked_add(digits.checked_mul(unit)? / 10u128.pow(frac.len() as u32))?;
    }
    Some(value)
}

/// Parses a memory size the way Docker does (`RAMInBytes`): a number, then an optional unit
/// `b`, `k`, `m`, `g`, `t`, `p` (case-insensitive, binary multiples, optional `b`/`ib` after).
pub fn parse_size_bytes(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid size {text:?}: expected e.g. 64M, 512k, 1.5G or a byte count");
    let s = text.trim();
    let num_len = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(num_len);
    if num.is_empty() {
        return Err(bad());
    }
    let unit = unit.to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b').filter(|u| !u.is_empty()))
        .unwrap_or(&unit);
    let shift = match unit {
        "" | "b" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(bad()),
    };
    let bytes = scaled(num, 1u128 << shift).ok_or_else(bad)?;
    u64::try_from(bytes).map_err(|_| bad())
}

/// Parses `--reserve-cpu 0.5` / `--limit-cpu 2` into billionths of a CPU (`NanoCPUs`).
pub fn parse_nano_cpus(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid CPU amount {text:?}: expected e.g. 0.5 or 2");
    let nanos = scaled(text.trim(), 1_000_000_000).ok_or_else(bad)?;
    u64::try_from(nanos).map_err(|_| bad())
}

/// Docker's `HumanDuration`: "Less than a second", "5 seconds", "About a minute", "3 hours"…
pub fn human_duration(ms: u64) -> String {
    let secs = ms / 1_000;
    let mins = secs / 60;
    let hours = mins / 60;
    match () {
        _ if secs < 1 => "Less than a second".to_string(),
        _ if secs == 1 => "1 second".to_string(),
        _ if secs < 60 => format!("{secs} seconds"),
        _ if mins == 1 => "About a minute".to_string(),
        _ if mins < 60 => format!("{mins} minutes"),
        _ if hours == 1 => "About an hour".to_string(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

/// Milliseconds as Go prints a duration, for `inspect --pretty`: `5s`, `1m0s`, `500ms`, `0s`.
pub fn format_duration_ms(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let (h, m, s, frac) = (
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1_000 % 60,
        ms % 1_000,
    );
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{}s", format!("{frac:03}").trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// Splits `text` into words the way a POSIX shell does (Docker's `--args`, a shell-words
/// string): blanks separate words; single quotes keep everything; double quotes keep all but
/// `\\`, `\"`, `\$` and `` \` ``, which a backslash escapes; outside quotes a backslash keeps
/// the next character. No expansion of any kind.
pub fn split_words(text: &str) -> Result<Vec<String>, String> {
    let bad = |why: &str| format!("invalid command line {text:?}: {why}");
    let mut words = Vec::new();
    let mut word = String::new();
    // A word exists once anything (even an empty pair of quotes) began it.
    let mut started = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            '\\' => {
                started = true;
                match chars.next() {
                    Some(n) => word.push(n),
                    None => return Err(bad("ends in a backslash")),
                }
            }
            '\'' => {
                started = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(n) => word.push(n),
                        None => return Err(bad("unterminated single quote")),
                    }
                }
            }
            '"' => {
                started = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(n @ ('\\' | '"' | '$' | '`')) => word.push(n),
                            Some(n) => {
                                word.push('\\');
                                word.push(n);
                            }
                            None => return Err(bad("unterminated double quote")),
                        },
                        Some(n) => word.push(n),
                        None => return Err(bad("unterminated double quote")),
                    }
                }
            }
            c => {
                started = true;
                word.push(c);
            }
        }
    }
    if started {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_go_syntax() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("5s"), Ok(5_000));
        assert_eq!(parse_duration_ms("1m"), Ok(60_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("1m30s"), Ok(90_000));
        assert_eq!(parse_duration_ms("1.5s"), Ok(1_500));
        assert_eq!(parse_duration_ms("0"), Ok(0));
        assert_eq!(parse_duration_ms("0s"), Ok(0));
        assert_eq!(parse_duration_ms("1500us"), Ok(1));
        for bad in [
            "",
            "5",
            "s",
            "5x",
            "1..5s",
            "-1s",
            "5 s",
            "99999999999999999999h",
        ] {
            assert!(parse_duration_ms(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn sizes_in_docker_syntax() {
        assert_eq!(parse_size_bytes("64M"), Ok(64 << 20));
        assert_eq!(parse_size_bytes("64m"), Ok(64 << 20));
        assert_eq!(parse_size_bytes("64MB"), Ok(64 << 20));
        assert_eq!(parse_size_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_size_bytes("1.5g"), Ok(3 << 29));
        assert_eq!(parse_size_bytes("512k"), Ok(512 << 10));
        assert_eq!(parse_size_bytes("1024"), Ok(1024));
        assert_eq!(parse_size_bytes("10b"), Ok(10));
        for bad in ["", "M", "64X", "64MM", "-1M", "1e3", "99999999P"] {
            assert!(parse_size_bytes(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn cpus_as_nano_cpus() {
        assert_eq!(parse_nano_cpus("0.5"), Ok(500_000_000));
        assert_eq!(parse_nano_cpus("2"), Ok(2_000_000_000));
        assert_eq!(parse_nano_cpus(".25"), Ok(250_000_000));
        assert!(parse_nano_cpus("half").is_err());
        assert!(parse_nano_cpus("").is_err());
    }

    #[test]
    fn human_durations_like_docker() {
        assert_eq!(human_duration(300), "Less than a second");
        assert_eq!(human_duration(1_000), "1 second");
        assert_eq!(human_duration(5_400), "5 seconds");
        assert_eq!(human_duration(61_000), "About a minute");
        assert_eq!(human_duration(7 * 60_000), "7 minutes");
        assert_eq!(human_duration(3_700_000), "About an hour");
        assert_eq!(human_duration(5 * 3_600_000), "5 hours");
        assert_eq!(human_duration(3 * 24 * 3_600_000), "3 days");
    }

    #[test]
    fn words_split_like_a_shell() {
        let w = |t: &str| split_words(t).unwrap();
        assert_eq!(w("sleep 1000"), ["sleep", "1000"]);
        assert_eq!(w("  -c   'sleep 2; exit 1' "), ["-c", "sleep 2; exit 1"]);
        assert_eq!(w(r#"a "b \"c\" \$d \x" e"#), ["a", r#"b "c" $d \x"#, "e"]);
        assert_eq!(w(r"a\ b c"), ["a b", "c"]);
        assert_eq!(w("'' x"), ["", "x"]);
        assert_eq!(w(r#"x"y"'z'"#), ["xyz"]);
        assert!(w("").is_empty());
        assert!(w("   ").is_empty());
        for bad in ["'open", "\"open", "end\\"] {
            assert!(split_words(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn go_style_duration_text() {
        assert_eq!(format_duration_ms(0), "0s");
        assert_eq!(format_duration_ms(500), "500ms");
        assert_eq!(format_duration_ms(5_000), "5s");
        assert_eq!(format_duration_ms(1_500), "1.5s");
        assert_eq!(format_duration_ms(60_000), "1m0s");
        assert_eq!(format_duration_ms(3_600_000), "1h0m0s");
    }
}
