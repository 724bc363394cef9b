//! A process's CPU time and resident memory, from `/proc` (for
//! `cluster.stats()`; read on the I/O thread, never the JavaScript one).

use std::fs;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub user_ms: u64,
    pub system_ms: u64,
    pub rss_bytes: u64,
}

/// `pid`'s usage (`None` for this process), or `None` once it is gone.
pub fn usage(pid: Option<i32>) -> Option<Usage> {
    let dir = match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".to_string(),
    };
    let stat = fs::read_to_string(format!("{dir}/stat")).ok()?;
    let statm = fs::read_to_string(format!("{dir}/statm")).ok()?;
    parse(&stat, &statm)
}

fn parse(stat: &str, statm: &str) -> Option<Usage> {
    // The command name may hold spaces and parentheses: fields are counted
    // from the last ')'. utime and stime are fields 14 and 15 of the line,
    // the 12th and 13th after the name.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    let resident: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let tick_ms = 1000 / rustix::param::clock_ticks_per_second().max(1);
    Some(Usage {
        user_ms: user * tick_ms,
        system_ms: system * tick_ms,
        rss_bytes: resident * rustix::param::page_size() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_with_spaces_and_parentheses_is_skipped() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 100 1000 50";
        let u = parse(stat, "1000 50 20 1 0 30 0").expect("parses");
        let tick = 1000 / rustix::param::clock_ticks_per_second();
        assert_eq!((u.user_ms, u.system_ms), (250 * tick, 75 * tick));
        assert_eq!(u.rss_bytes, 50 * rustix::param::page_size() as u64);
    }

    #[test]
    fn this_process_is_readable_and_a_missing_one_is_none() {
        let me = usage(None).expect("self");
        assert!(me.rss_bytes > 1 << 20);
        assert_eq!(usage(Some(i32::MAX)), None);
    }
}
