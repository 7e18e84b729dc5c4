//! End-to-end: `husk-monitor` driving real runc and crun containers (logs, exit codes, wait,
//! log reopen, tty, attach, failed create, OOM, memory footprint).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Fixture, Opts, runtimes};
use husk_monitor::client::{AttachEvent, AttachOptions, MonitorError};
use husk_monitor::cri_log::{MAX_LINE, Stream};
use husk_monitor::read_exit_file;

#[tokio::test]
async fn logs_carry_streams_tags_and_the_unterminated_tail() {
    for rt in runtimes() {
        let mut f = Fixture::new(
            &rt,
            "logs",
            "echo a; echo b >&2; printf partial",
            Opts::default(),
        );
        let pid = f.spawn().await.unwrap();
        assert!(pid > 1);
        f.start();
        let exit = f.wait_exit().await;
        assert_eq!(exit.exit_code, 0, "{}", rt.name);
        let recs = Fixture::records(&f.log_path());
        let mut sorted = recs.clone();
        sorted.sort_by(|a, b| a.2.cmp(&b.2));
        assert_eq!(
            sorted,
            vec![
                (Stream::Stdout, false, "a".to_string()),
                (Stream::Stderr, false, "b".to_string()),
                (Stream::Stdout, false, "partial".to_string()),
            ],
            "{}",
            rt.name
        );
        assert_eq!(read_exit_file(&f.cfg.exit_file), Some(exit));
    }
}

#[tokio::test]
async fn a_40k_line_becomes_partial_partial_final() {
    for rt in runtimes() {
        let script = "head -c 40960 /dev/zero | tr '\\000' x; echo; echo after";
        let mut f = Fixture::new(&rt, "long", script, Opts::default());
        f.spawn().await.unwrap();
        f.start();
        f.wait_exit().await;
        let recs = Fixture::records(&f.log_path());
        let shape: Vec<(bool, usize)> = recs.iter().map(|r| (r.1, r.2.len())).collect();
        assert_eq!(
            shape,
            vec![
                (true, MAX_LINE),
                (true, MAX_LINE),
                (false, 40960 - 2 * MAX_LINE),
                (false, 5)
            ],
            "{}",
            rt.name
        );
        assert!(recs[..3].iter().all(|r| r.2.bytes().all(|b| b == b'x')));
    }
}

#[tokio::test]
async fn exit_code_is_recorded() {
    for rt in runtimes() {
        let mut f = Fixture::new(&rt, "exit3", "exit 3", Opts::default());
        let pid = f.spawn().await.unwrap();
        f.start();
        let exit = f.wait_exit().await;
        assert_eq!(
            (exit.pid, exit.exit_code, exit.signal, exit.oom_killed),
            (pid, 3, None, false)
        );
        chrono::DateTime::parse_from_rfc3339(&exit.finished_at).unwrap();
        assert_eq!(read_exit_file(&f.cfg.exit_file), Some(exit));
        assert!(!f.cfg.socket.exists(), "socket removed at exit");
    }
}

#[tokio::test]
async fn sigkill_is_137_and_wait_returns_only_at_the_exit() {
    for rt in runtimes() {
        let mut f = Fixture::new(&rt, "kill", "sleep 100", Opts::default());
        let pid = f.spawn().await.unwrap();
        f.start();
        let client = f.client().await;
        let status = client.status().await.unwrap();
        assert_eq!((status.pid, status.running, status.exit), (pid, true, None));
        let waiter = tokio::spawn({
            let client = client.clone();
            async move { client.wait().await }
        });
        // A cancelled wait must not disturb the monitor.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), client.wait())
                .await
                .is_err()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiter.is_finished(), "wait returned before the exit");
        f.kill("KILL");
        let exit = tokio::time::timeout(Duration::from_secs(20), waiter)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!((exit.exit_code, exit.signal), (137, Some(9)), "{}", rt.name);
        assert_eq!(f.wait_exit().await, exit);
    }
}

#[tokio::test]
async fn reopen_log_loses_and_splits_nothing() {
    for rt in runtimes() {
        let script = "i=0; while [ $i -lt 300 ]; do echo $i; i=$((i+1)); usleep 10000; done";
        let mut f = Fixture::new(&rt, "reopen", script, Opts::default());
        f.spawn().await.unwrap();
        f.start();
        let client = f.client().await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let rotated = f.log_path().with_extension("log.1");
        std::fs::rename(f.log_path(), &rotated).unwrap();
        client.reopen_log().await.unwrap();
        f.wait_exit().await;
        let old = Fixture::records(&rotated);
        let new = Fixture::records(&f.log_path());
        assert!(
            !old.is_empty() && !new.is_empty(),
            "{}: {} / {}",
            rt.name,
            old.len(),
            new.len()
        );
        let mut seen: HashMap<u32, u32> = HashMap::new();
        for (stream, partial, content) in old.iter().chain(&new) {
            assert_eq!((*stream, *partial), (Stream::Stdout, false));
            *seen.entry(content.parse().unwrap()).or_default() += 1;
        }
        for i in 0..300 {
            assert_eq!(seen.get(&i), Some(&1), "{}: line {i}", rt.name);
        }
        assert_eq!(seen.len(), 300);
    }
}

#[tokio::test]
async fn tty_output_is_stdout_and_resize_reaches_the_pty() {
    for rt in runtimes() {
        let script = "stty size; echo hello; echo err >&2";
        let opts = Opts {
            tty: true,
            ..Opts::default()
        };
        let mut f = Fixture::new(&rt, "tty", script, opts);
        f.spawn().await.unwrap();
        let client = f.client().await;
        let (mut reader, mut writer) = client
            .attach(AttachOptions {
                stdin: false,
                stdout: true,
                stderr: true,
            })
            .await
            .unwrap();
        writer.resize(123, 45).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        f.start();
        let mut output = Vec::new();
        let exit = loop {
            match tokio::time::timeout(Duration::from_secs(20), reader.next())
                .await
                .unwrap()
                .unwrap()
            {
                Some(AttachEvent::Stdout(d)) => output.extend(d),
                Some(AttachEvent::Stderr(_)) => panic!("a tty has no stderr"),
                Some(AttachEvent::Exit(e)) => break e,
                None => panic!("attach closed before the exit"),
            }
        };
        assert_eq!(exit.exit_code, 0);
        let output = String::from_utf8_lossy(&output);
        assert!(output.contains("45 123"), "{}: {output:?}", rt.name);
        f.wait_exit().await;
        let recs = Fixture::records(&f.log_path());
        assert!(recs.iter().all(|r| r.0 == Stream::Stdout), "{recs:?}");
        let text: Vec<&str> = recs.iter().map(|r| r.2.trim_end_matches('\r')).collect();
        assert_eq!(text, ["45 123", "hello", "err"], "{}", rt.name);
    }
}

#[tokio::test]
async fn tty_stdin_reaches_the_container() {
    for rt in runtimes() {
        let opts = Opts {
            tty: true,
            stdin: true,
            ..Opts::default()
        };
        let mut f = Fixture::new(&rt, "ttyin", "read line; echo got:$line", opts);
        f.spawn().await.unwrap();
        let client = f.client().await;
        let all = AttachOptions {
            stdin: true,
            stdout: true,
            stderr: true,
        };
        let (mut reader, mut writer) = client.attach(all).await.unwrap();
        f.start();
        writer.stdin(b"hi\n").await.unwrap();
        let mut output = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(20), reader.next())
                .await
                .unwrap()
                .unwrap()
            {
                Some(AttachEvent::Stdout(d)) => output.extend(d),
                Some(AttachEvent::Exit(e)) => {
                    assert_eq!(e.exit_code, 0);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(
            String::from_utf8_lossy(&output).contains("got:hi"),
            "{}: {output:?}",
            rt.name
        );
        f.wait_exit().await;
    }
}

#[tokio::test]
async fn attach_fans_out_and_stdin_once_closes_stdin() {
    for rt in runtimes() {
        let opts = Opts {
            stdin: true,
            stdin_once: true,
            ..Opts::default()
        };
        let mut f = Fixture::new(&rt, "attach", "cat; echo done; echo bye >&2", opts);
        f.spawn().await.unwrap();
        let client = f.client().await;
        let all = AttachOptions {
            stdin: true,
            stdout: true,
            stderr: true,
        };
        let (mut r1, mut w1) = client.attach(all).await.unwrap();
        let out_only = AttachOptions {
            stdin: false,
            stdout: true,
            stderr: false,
        };
        let (mut r2, _w2) = client.attach(out_only).await.unwrap();
        f.start();
        w1.stdin(b"hello\n").await.unwrap();
        for r in [&mut r1, &mut r2] {
            let ev = tokio::time::timeout(Duration::from_secs(10), r.next())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                ev,
                Some(AttachEvent::Stdout(b"hello\n".to_vec())),
                "{}",
                rt.name
            );
        }
        // The first stdin client detaching closes the container's stdin: cat ends.
        drop((r1, w1));
        let mut events = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), r2.next())
                .await
                .unwrap()
                .unwrap()
            {
                Some(AttachEvent::Exit(e)) => {
                    assert_eq!(e.exit_code, 0);
                    break;
                }
                Some(ev) => events.push(ev),
                None => panic!("closed before the exit"),
            }
        }
        assert_eq!(
            events,
            [AttachEvent::Stdout(b"done\n".to_vec())],
            "stderr not subscribed"
        );
        f.wait_exit().await;
        let recs: Vec<_> = Fixture::records(&f.log_path())
            .into_iter()
            .map(|r| (r.0, r.2))
            .collect();
        assert_eq!(
            recs,
            [
                (Stream::Stdout, "hello".to_string()),
                (Stream::Stdout, "done".to_string()),
                (Stream::Stderr, "bye".to_string())
            ]
        );
    }
}

#[tokio::test]
async fn close_stdin_frame_ends_input_without_stdin_once() {
    for rt in runtimes() {
        let opts = Opts {
            stdin: true,
            ..Opts::default()
        };
        let mut f = Fixture::new(&rt, "closein", "wc -c", opts);
        f.spawn().await.unwrap();
        let client = f.client().await;
        let (_r, mut w) = client
            .attach(AttachOptions {
                stdin: true,
                ..Default::default()
            })
            .await
            .unwrap();
        f.start();
        let big = vec![b'z'; 200_000]; // more than the pipe and the monitor's stdin queue hold
        w.stdin(&big).await.unwrap();
        w.close_stdin().await.unwrap();
        let exit = f.wait_exit().await;
        assert_eq!(exit.exit_code, 0);
        let recs = Fixture::records(&f.log_path());
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].2.trim(), "200000", "{}", rt.name);
    }
}

#[tokio::test]
async fn failing_create_reports_the_runtime_error_and_leaves_nothing() {
    for rt in runtimes() {
        let opts = Opts {
            broken_bundle: true,
            ..Opts::default()
        };
        let mut f = Fixture::new(&rt, "broken", "true", opts);
        let err = f.spawn().await.unwrap_err();
        let MonitorError::Create { message } = &err else {
            panic!("{err:?}")
        };
        assert!(message.contains("config.json"), "{}: {message}", rt.name);
        let cfg_path = f.cfg_path.to_string_lossy().into_owned();
        assert_eq!(common::processes_mentioning(&cfg_path), Vec::<i32>::new());
        assert!(!f.cfg.socket.exists());
        assert!(!f.cfg.exit_file.exists());
    }
}

#[tokio::test]
async fn oom_kill_is_recorded() {
    for rt in runtimes() {
        let opts = Opts {
            memory_limit: Some(8 << 20),
            ..Opts::default()
        };
        let mut f = Fixture::new(&rt, "oom", "head -c 64m /dev/zero | tail", opts);
        f.spawn().await.unwrap();
        f.start();
        let exit = f.wait_exit().await;
        assert!(exit.oom_killed, "{}: {exit:?}", rt.name);
        assert_eq!(exit.exit_code, 137);
    }
}

#[tokio::test]
async fn a_slow_attach_client_is_dropped_not_waited_for() {
    for rt in runtimes() {
        let script = "head -c 4000000 /dev/zero | tr '\\000' y | fold -w 100; echo; echo end";
        let mut f = Fixture::new(&rt, "slow", script, Opts::default());
        f.spawn().await.unwrap();
        let client = f.client().await;
        // Attached but never read: its queue fills, the monitor drops it.
        let (mut slow, _slow_w) = client
            .attach(AttachOptions {
                stdout: true,
                ..Default::default()
            })
            .await
            .unwrap();
        f.start();
        let exit = f.wait_exit().await;
        assert_eq!(exit.exit_code, 0);
        // It was cut off: what it gets ends before the exit frame.
        let mut got = 0;
        while let Some(ev) = slow.next().await.unwrap() {
            assert!(
                !matches!(ev, AttachEvent::Exit(_)),
                "{}: slow client was not dropped",
                rt.name
            );
            got += 1;
        }
        assert!(got > 0);
        let recs = Fixture::records(&f.log_path());
        assert_eq!(recs.len(), 40_001, "{}", rt.name);
        assert_eq!(recs.last().unwrap().2, "end");
    }
}

/// Memory of running monitors, from `/proc/<pid>/smaps_rollup` (kB): `Pss` alone and with
/// four monitors sharing the binary's pages, `Pss_Anon` is what each one adds. Run with
/// `HUSK_MONITOR_BIN=target/release/husk-monitor` to measure (and bound) a release build.
#[tokio::test]
async fn monitor_memory_footprint() {
    for rt in runtimes() {
        let mut fixtures = Vec::new();
        for i in 0..4 {
            let mut f = Fixture::new(
                &rt,
                &format!("pss{i}"),
                "echo hi; sleep 100",
                Opts::default(),
            );
            f.spawn().await.unwrap();
            f.start();
            fixtures.push(f);
            if i == 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let m = smaps_rollup(fixtures[0].monitor_pid.unwrap());
                report(rt.name, 1, &m);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let client = fixtures[0].client().await;
        assert!(client.status().await.unwrap().running);
        let m = smaps_rollup(fixtures[0].monitor_pid.unwrap());
        report(rt.name, 4, &m);
        if std::env::var_os("HUSK_MONITOR_BIN").is_some() {
            assert!(m["Pss"] <= 1024, "Pss {} kB", m["Pss"]);
            assert!(m["Pss_Anon"] <= 400, "Pss_Anon {} kB", m["Pss_Anon"]);
        }
        for f in &mut fixtures {
            f.kill("KILL");
            assert_eq!(f.wait_exit().await.exit_code, 137);
        }
    }
}

fn smaps_rollup(pid: i32) -> HashMap<String, u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    rollup
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let key = words.next()?.strip_suffix(':')?;
            Some((key.to_string(), words.next()?.parse().ok()?))
        })
        .collect()
}

fn report(runtime: &str, monitors: usize, m: &HashMap<String, u64>) {
    eprintln!(
        "husk-monitor ({}) under {runtime}, {monitors} running: Rss {} kB, Pss {} kB, Pss_Anon {} kB, Pss_File {} kB",
        common::monitor_bin().display(),
        m["Rss"],
        m["Pss"],
        m["Pss_Anon"],
        m["Pss_File"],
    );
}
