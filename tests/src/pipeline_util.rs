//! Helpers for the pipeline's end-to-end tests: the `pipeline` process, records written the
//! way the gateway writes them (KPL aggregates in the local log or in Kinesis), and independent
//! readers of the lake (pyarrow, boto3 against moto).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use edgeway_record::kpl::Aggregator;
use edgeway_record::segment::{FsyncPolicy, SegmentWriter};
use edgeway_record::AccessLogRecord;

use crate::aws::Moto;

/// 2025-11-22T02:00:00Z.
pub const T0: i64 = 1_763_776_800_000;

/// A unique lower-case name for a bucket, stream or table.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    #[allow(
        clippy::disallowed_methods,
        reason = "a unique name, not a time decision"
    )]
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000;
    format!(
        "{prefix}-{}-{t}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn record(i: u64, event_time: i64) -> AccessLogRecord {
    AccessLogRecord {
        record_version: 1,
        event_time,
        request_id: format!("req-{i:08}"),
        trace_id: i.is_multiple_of(2).then(|| format!("{i:032x}")),
        client_ip: "203.0.113.9".into(),
        client_port: 40_000 + (i % 1000) as i32,
        method: if i.is_multiple_of(5) { "POST" } else { "GET" }.into(),
        scheme: "https".into(),
        host: "api.example.com".into(),
        path: format!("/v1/items/{}", i % 17),
        query: None,
        http_version: "HTTP/2".into(),
        status: if i.is_multiple_of(7) { 404 } else { 200 },
        bytes_in: (i % 100) as i64,
        bytes_out: 1000 + i as i64,
        duration_ms: i as f64 / 4.0,
        upstream_connect_ms: i.is_multiple_of(3).then_some(0.5),
        upstream_response_ms: Some(1.25),
        route: Some("api-v1".into()),
        upstream_cluster: Some("api".into()),
        auth_result: "ok".into(),
        auth_subject: Some(format!("user-{}", i % 9)),
        policy_version: "abc123".into(),
        gateway_instance: "gw-test".into(),
        ..Default::default()
    }
}

/// KPL aggregates of `per` records each, with batch ids as partition keys.
pub fn aggregates(recs: &[AccessLogRecord], per: usize, instance: &str) -> Vec<(String, Vec<u8>)> {
    recs.chunks(per.max(1))
        .enumerate()
        .map(|(n, chunk)| {
            let key = format!("{instance}-{n}");
            let mut a = Aggregator::new(&key, 1 << 20);
            for r in chunk {
                assert!(a.try_push(&r.to_bytes()));
            }
            (key, a.finish())
        })
        .collect()
}

/// Append aggregates to a local log directory, as the gateway's local sink does.
pub fn write_local_log(dir: &Path, blobs: &[(String, Vec<u8>)]) {
    let mut w = SegmentWriter::open(dir, 1 << 20, u64::MAX, FsyncPolicy::Never).unwrap();
    for (_, b) in blobs {
        w.append(b).unwrap();
    }
    w.sync().unwrap();
}

/// Run a Python snippet; panics with its stderr on failure; returns stdout.
pub fn python(script: &str, env: &[(&str, String)]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python failed:\n{}\n--- script ---\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// boto3 against moto: `script` sees `kinesis`, `s3`, `glue`, `ddb` clients.
pub fn boto(moto: &Moto, script: &str) -> String {
    let prelude = "import boto3, json, sys, os\n\
        kw = dict(endpoint_url=os.environ['AWS_ENDPOINT_URL'], region_name='us-east-1')\n\
        kinesis = boto3.client('kinesis', **kw)\n\
        s3 = boto3.client('s3', **kw)\n\
        glue = boto3.client('glue', **kw)\n\
        ddb = boto3.client('dynamodb', **kw)\n";
    let env: Vec<(&str, String)> = moto.env();
    python(&format!("{prelude}{script}"), &env)
}

/// Create a stream with `shards` shards and put `blobs` (hex-passed to boto3).
pub fn create_stream(moto: &Moto, stream: &str, shards: u32) {
    boto(
        moto,
        &format!(
            "kinesis.create_stream(StreamName='{stream}', ShardCount={shards})\n\
             kinesis.get_waiter('stream_exists').wait(StreamName='{stream}', WaiterConfig={{'Delay': 0.1}})\n"
        ),
    );
}

pub fn put_blobs(moto: &Moto, stream: &str, blobs: &[(String, Vec<u8>)]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blobs.txt");
    let text: String = blobs
        .iter()
        .map(|(k, b)| {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            format!("{k} {hex}\n")
        })
        .collect();
    std::fs::write(&file, text).unwrap();
    boto(
        moto,
        &format!(
            "for line in open('{}'):\n    k, h = line.split()\n    kinesis.put_record(StreamName='{stream}', PartitionKey=k, Data=bytes.fromhex(h))\n",
            file.display()
        ),
    );
}

/// A running `pipeline run`; killed on drop.
pub struct PipelineProc {
    pub child: Child,
    pub log: PathBuf,
}

impl PipelineProc {
    pub fn start(args: &[&str], env: &[(&'static str, String)], log: PathBuf) -> PipelineProc {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(crate::bin("pipeline"))
            .arg("run")
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(f.try_clone().unwrap()))
            .stderr(Stdio::from(f))
            .spawn()
            .expect("spawn pipeline");
        PipelineProc { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait for exit; panics with the log on failure.
    pub fn wait_success(&mut self) {
        let st = self.child.wait().unwrap();
        assert!(st.success(), "pipeline exited with {st}:\n{}", self.log());
    }

    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
    }
}

impl Drop for PipelineProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run the pipeline to completion (`--exit-when-idle`).
pub fn run_to_idle(args: &[&str], env: &[(&'static str, String)], log: PathBuf) -> String {
    let mut all = args.to_vec();
    all.extend(["--exit-when-idle", "--idle-poll", "100ms"]);
    let mut p = PipelineProc::start(&all, env, log);
    p.wait_success();
    p.log()
}

/// `pipeline run` in local mode, `log` (a gateway access-log dir) → `lake`, plus `extra`
/// flags, until idle; its output goes to `out`.
pub fn run_local_to_idle(log: &Path, lake: &Path, extra: &[&str], out: PathBuf) -> String {
    let (log, lake) = (log.to_str().unwrap(), lake.to_str().unwrap());
    let mut args = vec!["--local-log", log, "--lake", lake];
    args.extend_from_slice(extra);
    run_to_idle(&args, &[], out)
}

/// Every data file under `root/access_logs` (relative paths, sorted).
pub fn parquet_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("access_logs")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// Download `s3://bucket/prefix/` into a local directory (moto), for pyarrow.
pub fn download(moto: &Moto, bucket: &str, prefix: &str, dir: &Path) {
    boto(
        moto,
        &format!(
            "p = s3.get_paginator('list_objects_v2')\n\
             for page in p.paginate(Bucket='{bucket}', Prefix='{prefix}'):\n\
             \x20   for o in page.get('Contents', []):\n\
             \x20       k = o['Key']; rel = k[len('{prefix}'):].lstrip('/')\n\
             \x20       path = os.path.join('{}', rel); os.makedirs(os.path.dirname(path), exist_ok=True)\n\
             \x20       s3.download_file('{bucket}', k, path)\n",
            dir.display()
        ),
    );
}

/// pyarrow's view of the lake: request ids (sorted, with repeats) and the schema.
pub fn pyarrow_request_ids(root: &Path) -> Vec<String> {
    let files = parquet_files(root);
    if files.is_empty() {
        return Vec::new();
    }
    let list: Vec<String> = files
        .iter()
        .map(|f| format!("'{}'", root.join(f).display()))
        .collect();
    let out = python(
        &format!(
            "import pyarrow.parquet as pq, json\n\
             ids = []\n\
             for f in [{}]:\n    ids += pq.read_table(f, columns=['request_id']).column(0).to_pylist()\n\
             print(json.dumps(sorted(ids)))\n",
            list.join(",")
        ),
        &[],
    );
    serde_json::from_str(out.trim()).unwrap()
}
