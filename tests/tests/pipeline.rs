//! The pipeline end to end: real `pipeline` processes reading the local log or Kinesis (moto),
//! writing Parquet to a local lake or S3 (moto), with leases in DynamoDB (moto) and the Glue
//! table (moto); files checked by pyarrow, an independent reader.

use std::time::Duration;

use e2e::aws::Moto;
use e2e::eventually;
use e2e::pipeline_util::*;

const HOUR: i64 = 3_600_000;

#[tokio::test]
async fn local_log_to_parquet_with_types_values_layout_and_deterministic_keys() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("accesslog");
    // Hour 02, then hour 03, then a late record for hour 01.
    let mut recs: Vec<_> = (0..300u64)
        .map(|i| record(i, T0 + i as i64 * 1000))
        .collect();
    recs.extend((300..400u64).map(|i| record(i, T0 + HOUR + i as i64)));
    recs.push(record(400, T0 - HOUR + 5));
    write_local_log(&log, &aggregates(&recs, 50, "gw-a"));

    let lake_a = dir.path().join("lake-a");
    let lake_b = dir.path().join("lake-b");
    for lake in [&lake_a, &lake_b] {
        run_local_to_idle(
            &log,
            lake,
            &["--threads", "1"],
            dir.path().join("pipeline.log"),
        );
    }
    let files = parquet_files(&lake_a);
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files {
        assert!(
            f.starts_with("access_logs/dt=2025-11-22/hour=0")
                && f.contains("/local-")
                && f.ends_with(".parquet"),
            "{f}"
        );
    }
    assert!(
        files.iter().any(|f| f.contains("hour=01/")),
        "late record in its own hour"
    );
    assert_eq!(files, parquet_files(&lake_b), "deterministic keys");

    let ids = pyarrow_request_ids(&lake_a);
    assert_eq!(ids.len(), 401);
    let out = python(
        &format!(
            "import pyarrow.parquet as pq, pyarrow as pa, json, glob\n\
             root = '{}'\n\
             fs = sorted(glob.glob(root + '/access_logs/**/*.parquet', recursive=True))\n\
             t = pq.read_table(fs[0])\n\
             s = t.schema\n\
             md = pq.ParquetFile(fs[0]).metadata\n\
             col = md.row_group(0).column(1)\n\
             assert str(s.field('event_time').type) == 'timestamp[ms, tz=UTC]', s.field('event_time').type\n\
             assert s.field('status').type == pa.int32() and s.field('bytes_out').type == pa.int64()\n\
             assert s.field('duration_ms').type == pa.float64() and s.field('method').type == pa.string()\n\
             assert md.format_version == '1.0', md.format_version\n\
             assert col.compression == 'ZSTD', col.compression\n\
             assert col.statistics.has_min_max\n\
             assert 'DICTIONARY' in str(md.row_group(0).column(6).encodings) or 'PLAIN_DICTIONARY' in str(md.row_group(0).column(6).encodings)\n\
             ts = t.column('event_time').to_pylist()\n\
             assert ts == sorted(ts)\n\
             rows = [r for f in fs for r in pq.read_table(f).to_pylist()]\n\
             r7 = [r for r in rows if r['request_id'] == 'req-00000007'][0]\n\
             print(json.dumps({{'status': r7['status'], 'bytes_out': r7['bytes_out'], 'duration_ms': r7['duration_ms'], 'trace_id': r7['trace_id'], 'ms': int(r7['event_time'].timestamp()*1000), 'upstream_connect_ms': r7['upstream_connect_ms']}}))\n\
             for a, b in zip(fs, sorted(glob.glob('{}/access_logs/**/*.parquet', recursive=True))):\n    assert pq.read_table(a).equals(pq.read_table(b)), a\n",
            lake_a.display(),
            lake_b.display()
        ),
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["status"], 404);
    assert_eq!(v["bytes_out"], 1007);
    assert_eq!(v["duration_ms"], 1.75);
    assert_eq!(v["trace_id"], serde_json::Value::Null);
    assert_eq!(v["ms"], T0 + 7000);
    assert_eq!(v["upstream_connect_ms"], serde_json::Value::Null);
}

#[tokio::test]
async fn rolls_by_size_into_several_files() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("accesslog");
    let recs: Vec<_> = (0..5000u64).map(|i| record(i, T0 + i as i64)).collect();
    write_local_log(&log, &aggregates(&recs, 100, "gw-a"));
    let lake = dir.path().join("lake");
    run_local_to_idle(
        &log,
        &lake,
        &["--target-file-bytes", "20000", "--row-group-rows", "1000"],
        dir.path().join("pipeline.log"),
    );
    let files = parquet_files(&lake);
    assert!(files.len() >= 3, "{files:?}");
    let ids = pyarrow_request_ids(&lake);
    assert_eq!(ids.len(), 5000);
}

#[tokio::test]
async fn kill_9_mid_file_then_restart_gives_every_record_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("accesslog");
    let lake = dir.path().join("lake");
    // Two hours interleaved so files of one hour complete while the other's is open.
    let recs: Vec<_> = (0..60_000u64)
        .map(|i| record(i, if i % 3 == 0 { T0 + HOUR } else { T0 } + i as i64))
        .collect();
    write_local_log(&log, &aggregates(&recs, 200, "gw-a"));
    let args = [
        "--local-log",
        log.to_str().unwrap(),
        "--lake",
        lake.to_str().unwrap(),
        "--target-file-bytes",
        "150000",
        "--row-group-rows",
        "5000",
        "--threads",
        "1",
    ];
    let mut p = PipelineProc::start(&args, &[], dir.path().join("p1.log"));
    eventually("first files", Duration::from_secs(60), || {
        let n = parquet_files(&lake).len();
        async move { (n >= 2).then_some(()) }
    })
    .await;
    p.signal("KILL");
    let _ = p.child.wait();
    let partial = pyarrow_request_ids(&lake).len();
    assert!(partial < 60_000, "killed before the end ({partial} rows)");
    let before = parquet_files(&lake);
    run_to_idle(&args, &[], dir.path().join("p2.log"));
    let ids = pyarrow_request_ids(&lake);
    let mut uniq = ids.clone();
    uniq.dedup();
    assert_eq!(uniq.len(), 60_000, "every record");
    assert_eq!(ids.len(), 60_000, "exactly once");
    let after = parquet_files(&lake);
    assert!(
        before.iter().all(|f| after.contains(f)),
        "replay rewrote the same keys"
    );
}

#[tokio::test]
async fn kinesis_to_s3_with_glue_table_and_error_prefix() {
    // Its own moto: the Glue table name (edgeway.access_logs) is global, and the lake tests
    // create the same table against the shared server in parallel.
    let moto = Moto::start().await;
    let stream = unique("pl-s3");
    let bucket = unique("lake");
    create_stream(&moto, &stream, 2);
    boto(&moto, &format!("s3.create_bucket(Bucket='{bucket}')"));
    let recs: Vec<_> = (0..500u64)
        .map(|i| record(i, T0 + i as i64 * 100))
        .collect();
    let mut blobs = aggregates(&recs, 40, "gw-k");
    blobs.push((
        "garbage-1".into(),
        b"\xf3\x89\x9a\xc2not-a-valid-aggregate-at-all".to_vec(),
    ));
    put_blobs(&moto, &stream, &blobs);

    let d = tempfile::tempdir().unwrap();
    let root = format!("s3://{bucket}/lake");
    run_to_idle(
        &[
            "--stream",
            &stream,
            "--lake",
            &root,
            "--glue",
            "true",
            "--register-partitions",
        ],
        &moto.env(),
        d.path().join("p.log"),
    );
    let local = d.path().join("copy");
    download(&moto, &bucket, "lake", &local);
    let ids = pyarrow_request_ids(&local);
    assert_eq!(ids.len(), 500);
    let files = parquet_files(&local);
    assert!(
        files.iter().all(|f| f.contains("/shardId-0000000000")),
        "{files:?}"
    );
    // The malformed record is in the error prefix with its shard, sequence and reason.
    let errs = std::fs::read_dir(local.join("errors")).unwrap().count();
    assert_eq!(errs, 1);
    let shard_dir = std::fs::read_dir(local.join("errors"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let e = std::fs::read_dir(&shard_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(e).unwrap()).unwrap();
    assert!(v["reason"].as_str().unwrap().contains("checksum"), "{v}");
    assert!(v["shard"].as_str().unwrap().starts_with("shardId-"));
    assert!(!v["sequence_number"].as_str().unwrap().is_empty());

    // Glue: columns and types match the files' schema; SerDe, keys, projection.
    let f0 = local.join(&files[0]);
    let out = boto(
        &moto,
        &format!(
            "import pyarrow.parquet as pq\n\
             t = glue.get_table(DatabaseName='edgeway', Name='access_logs')['Table']\n\
             sd = t['StorageDescriptor']\n\
             assert sd['SerdeInfo']['SerializationLibrary'] == 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe'\n\
             assert sd['InputFormat'].endswith('MapredParquetInputFormat') and sd['OutputFormat'].endswith('MapredParquetOutputFormat')\n\
             assert sd['Location'] == 's3://{bucket}/lake/access_logs/', sd['Location']\n\
             assert [(k['Name'], k['Type']) for k in t['PartitionKeys']] == [('dt','string'),('hour','string')]\n\
             p = t['Parameters']\n\
             assert p['projection.enabled'] == 'true' and p['projection.dt.type'] == 'date' and p['projection.dt.format'] == 'yyyy-MM-dd'\n\
             assert p['projection.hour.type'] == 'integer' and p['projection.hour.range'] == '0,23' and p['projection.hour.digits'] == '2'\n\
             assert p['storage.location.template'] == 's3://{bucket}/lake/access_logs/dt=${{dt}}/hour=${{hour}}'\n\
             assert t['TableType'] == 'EXTERNAL_TABLE'\n\
             m = {{'timestamp[ms, tz=UTC]': 'timestamp', 'string': 'string', 'int32': 'int', 'int64': 'bigint', 'double': 'double', 'bool': 'boolean'}}\n\
             s = pq.read_schema('{}')\n\
             assert [(c['Name'], c['Type']) for c in sd['Columns']] == [(f.name, m[str(f.type)]) for f in s], (sd['Columns'], s)\n\
             print('ok')\n",
            f0.display()
        ),
    );
    assert_eq!(out.trim(), "ok");
    // --register-partitions: exactly the partitions that hold files, each at its own prefix.
    let mut want: Vec<String> = files
        .iter()
        .map(|f| {
            let dt = f.split("dt=").nth(1).unwrap().split('/').next().unwrap();
            let hour = f.split("hour=").nth(1).unwrap().split('/').next().unwrap();
            format!("{dt} {hour} s3://{bucket}/lake/access_logs/dt={dt}/hour={hour}/")
        })
        .collect();
    want.sort();
    want.dedup();
    let got = boto(
        &moto,
        "ps = glue.get_partitions(DatabaseName='edgeway', TableName='access_logs')['Partitions']\n\
         for l in sorted(' '.join(p['Values'] + [p['StorageDescriptor']['Location']]) for p in ps): print(l)\n\
         assert all(p['StorageDescriptor']['SerdeInfo']['SerializationLibrary'].endswith('ParquetHiveSerDe') for p in ps)\n",
    );
    assert_eq!(got.lines().collect::<Vec<_>>(), want);
    // Idempotent: a second start leaves the table as it is.
    run_to_idle(
        &["--stream", &stream, "--lake", &root, "--glue", "true"],
        &moto.env(),
        d.path().join("p2.log"),
    );
    download(&moto, &bucket, "lake", &d.path().join("copy2"));
    assert_eq!(
        pyarrow_request_ids(&d.path().join("copy2")).len(),
        500,
        "checkpoints kept"
    );
}

#[tokio::test]
async fn split_shard_is_read_parent_first() {
    let moto = Moto::shared().await;
    let stream = unique("pl-split");
    let bucket = unique("lake");
    create_stream(&moto, &stream, 1);
    boto(&moto, &format!("s3.create_bucket(Bucket='{bucket}')"));
    let recs: Vec<_> = (0..200u64).map(|i| record(i, T0 + i as i64)).collect();
    let blobs = aggregates(&recs, 20, "gw-s");
    put_blobs(&moto, &stream, &blobs[..5]);
    boto(
        &moto,
        &format!("kinesis.split_shard(StreamName='{stream}', ShardToSplit='shardId-000000000000', NewStartingHashKey=str(2**127))"),
    );
    put_blobs(&moto, &stream, &blobs[5..]);
    let d = tempfile::tempdir().unwrap();
    let log = run_to_idle(
        &[
            "--stream",
            &stream,
            "--lake",
            &format!("s3://{bucket}/lake"),
            "--glue",
            "false",
        ],
        &moto.env(),
        d.path().join("p.log"),
    );
    let line = |what: &str, shard: &str| {
        log.lines()
            .position(|l| l.contains(what) && l.contains(&format!("shard={shard}")))
            .unwrap_or_else(|| panic!("no `{what}` for {shard} in:\n{log}"))
    };
    let parent_ended = line("shard ended", "shardId-000000000000");
    let child1 = line("shard started", "shardId-000000000001");
    let child2 = line("shard started", "shardId-000000000002");
    assert!(line("shard started", "shardId-000000000000") < parent_ended);
    assert!(parent_ended < child1 && parent_ended < child2, "{log}");
    download(&moto, &bucket, "lake", &d.path().join("copy"));
    let ids = pyarrow_request_ids(&d.path().join("copy"));
    let mut uniq = ids.clone();
    uniq.dedup();
    assert_eq!((ids.len(), uniq.len()), (200, 200));
}

#[tokio::test]
async fn two_workers_split_the_shards_and_a_dead_workers_leases_move() {
    let moto = Moto::shared().await;
    let stream = unique("pl-lease");
    let bucket = unique("lake");
    let table = unique("leases");
    create_stream(&moto, &stream, 4);
    boto(&moto, &format!("s3.create_bucket(Bucket='{bucket}')"));
    let recs: Vec<_> = (0..800u64).map(|i| record(i, T0 + i as i64)).collect();
    let blobs = aggregates(&recs, 20, "gw-l");
    put_blobs(&moto, &stream, &blobs[..20]);
    let d = tempfile::tempdir().unwrap();
    let root = format!("s3://{bucket}/lake");
    let args = |id: &'static str| {
        vec![
            "--stream".to_string(),
            stream.clone(),
            "--lake".into(),
            root.clone(),
            "--glue".into(),
            "false".into(),
            "--lease-table".into(),
            table.clone(),
            "--worker-id".into(),
            id.into(),
            "--lease-duration".into(),
            "3s".into(),
            "--discovery-interval".into(),
            "300ms".into(),
            "--idle-poll".into(),
            "200ms".into(),
            "--max-file-age".into(),
            "1s".into(),
        ]
    };
    let a_args = args("worker-a");
    let b_args = args("worker-b");
    let a_ref: Vec<&str> = a_args.iter().map(String::as_str).collect();
    let b_ref: Vec<&str> = b_args.iter().map(String::as_str).collect();
    let mut a = PipelineProc::start(&a_ref, &moto.env(), d.path().join("a.log"));
    let mut b = PipelineProc::start(&b_ref, &moto.env(), d.path().join("b.log"));
    let owners = |moto: &Moto| -> Vec<String> {
        let out = boto(
            moto,
            &format!(
                "import time\n\
                 items = ddb.scan(TableName='{table}', ConsistentRead=True).get('Items', [])\n\
                 now = int(time.time()*1000)\n\
                 print(json.dumps(sorted(i['owner']['S'] for i in items if int(i['expires_ms']['N']) > now)))\n"
            ),
        );
        serde_json::from_str(out.trim()).unwrap_or_default()
    };
    eventually(
        "two workers with two shards each",
        Duration::from_secs(60),
        || {
            let o = owners(&moto);
            let ok = o.len() == 4 && o.iter().filter(|x| *x == "worker-a").count() == 2;
            async move { ok.then_some(()) }
        },
    )
    .await;
    a.signal("KILL");
    let _ = a.child.wait();
    eventually(
        "worker-b takes the dead worker's shards",
        Duration::from_secs(60),
        || {
            let o = owners(&moto);
            let ok = o.len() == 4 && o.iter().all(|x| x == "worker-b");
            async move { ok.then_some(()) }
        },
    )
    .await;
    put_blobs(&moto, &stream, &blobs[20..]);
    let copy = d.path().join("copy");
    eventually("every record in the lake", Duration::from_secs(60), || {
        let _ = std::fs::remove_dir_all(&copy);
        download(&moto, &bucket, "lake", &copy);
        let n = pyarrow_request_ids(&copy).len();
        async move { (n >= 800).then_some(()) }
    })
    .await;
    b.signal("TERM");
    b.wait_success();
    let _ = std::fs::remove_dir_all(&copy);
    download(&moto, &bucket, "lake", &copy);
    let ids = pyarrow_request_ids(&copy);
    let mut uniq = ids.clone();
    uniq.dedup();
    assert_eq!(
        (ids.len(), uniq.len()),
        (800, 800),
        "exactly once across the lease move"
    );
}
