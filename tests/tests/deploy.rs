//! Deployment end to end: the CloudFormation template (`deploy/aws/edgeway-data.yaml`)
//! deployed through moto's CloudFormation API, then the real binaries run with nothing but the
//! stack's outputs as flags (a request's record goes gateway → Kinesis → pipeline → S3 lake,
//! `lake init` and `lake query` on top); the IAM policies read back and checked against the
//! created resources; and a policy reload through a Kubernetes ConfigMap volume's `..data`
//! symlink swap, and a certificate rotation through the same swap of the TLS Secret volume
//! (`deploy/k8s` mounts both that way).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::aws::Moto;
use e2e::origin::Origin;
use e2e::pipeline_util::{python, run_to_idle, unique};
use e2e::{bin, eventually, Gateway};
use serde_json::Value;

const TEMPLATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/aws/edgeway-data.yaml"
);
/// The Kubernetes namespace and service accounts of `deploy/k8s` (the IRSA trust policies name
/// them).
const NAMESPACE: &str = "edgeway";
const OIDC_ISSUER: &str = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B7";

/// boto3 against `moto`, with the clients the checks below use.
fn boto3(moto: &Moto, script: &str) -> String {
    let prelude = "import boto3, json, os\n\
        kw = dict(endpoint_url=os.environ['AWS_ENDPOINT_URL'], region_name=os.environ['AWS_REGION'])\n\
        cfn = boto3.client('cloudformation', **kw)\n\
        iam = boto3.client('iam', **kw)\n\
        kinesis = boto3.client('kinesis', **kw)\n\
        s3 = boto3.client('s3', **kw)\n\
        ddb = boto3.client('dynamodb', **kw)\n\
        kms = boto3.client('kms', **kw)\n";
    python(&format!("{prelude}{script}"), &moto.env())
}

/// A stack created from the template; its outputs by key.
struct Stack {
    name: String,
    outputs: BTreeMap<String, String>,
}

impl Stack {
    /// `CreateStack` with the template as it is in the repository, and wait for it.
    fn deploy(moto: &Moto) -> Stack {
        // Lower case: the bucket name is derived from the stack name.
        let name = unique("edgeway");
        let out = boto3(
            moto,
            &format!(
                "cfn.create_stack(StackName='{name}', TemplateBody=open('{TEMPLATE}').read(),\n\
                 \x20   Capabilities=['CAPABILITY_NAMED_IAM'],\n\
                 \x20   Parameters=[{{'ParameterKey': 'EksOidcIssuer', 'ParameterValue': '{OIDC_ISSUER}'}},\n\
                 \x20               {{'ParameterKey': 'KubernetesNamespace', 'ParameterValue': '{NAMESPACE}'}}])\n\
                 cfn.get_waiter('stack_create_complete').wait(StackName='{name}', WaiterConfig={{'Delay': 1, 'MaxAttempts': 120}})\n\
                 s = cfn.describe_stacks(StackName='{name}')['Stacks'][0]\n\
                 print(json.dumps({{o['OutputKey']: o['OutputValue'] for o in s['Outputs']}}))\n"
            ),
        );
        let outputs = serde_json::from_str(out.trim()).expect("stack outputs");
        Stack { name, outputs }
    }

    fn out(&self, key: &str) -> &str {
        self.outputs
            .get(key)
            .unwrap_or_else(|| panic!("stack output {key} missing: {:?}", self.outputs))
    }

    /// An `*Args` output as the argument list a shell would make of it.
    fn args(&self, key: &str) -> Vec<String> {
        self.out(key).split_whitespace().map(String::from).collect()
    }
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn run_lake(args: &[&str], env: &[(&str, String)]) -> String {
    let out = Command::new(bin("lake"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run lake");
    assert!(
        out.status.success(),
        "lake {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[tokio::test]
async fn the_template_deploys_and_a_request_reaches_the_lake_through_the_stack() {
    // Its own moto: the Glue table name (edgeway.access_logs) is global in a region.
    let moto = Moto::start().await;
    let stack = Stack::deploy(&moto);
    let stream = stack.out("GatewayKinesisStream");
    assert_eq!(stream, stack.out("PipelineStream"));
    assert_eq!(stack.out("AwsRegion"), e2e::aws::REGION);
    assert_eq!(stack.out("LakeWorkgroup"), "edgeway");

    // The resources as moto holds them (moto's CloudFormation ignores some properties:
    // stream encryption and mode, the public access block, lifecycle rules and the bucket
    // policy; cfn-lint and checkov check those in the template, deploy/check).
    let lake_root = stack.out("LakeRoot");
    let bucket = lake_root
        .strip_prefix("s3://")
        .and_then(|r| r.split('/').next())
        .expect("s3 lake root");
    let table = stack.out("PipelineLeaseTable");
    let facts = boto3(
        &moto,
        &format!(
            "k = kinesis.describe_stream_summary(StreamName='{stream}')['StreamDescriptionSummary']\n\
             e = s3.get_bucket_encryption(Bucket='{bucket}')['ServerSideEncryptionConfiguration']['Rules'][0]['ApplyServerSideEncryptionByDefault']\n\
             t = ddb.describe_table(TableName='{table}')['Table']\n\
             print(json.dumps({{'stream': k['StreamStatus'], 'sse': e['SSEAlgorithm'], 'sse_key': e['KMSMasterKeyID'],\n\
             \x20   'keys': [(x['AttributeName'], x['KeyType']) for x in t['KeySchema']], 'billing': t['BillingModeSummary']['BillingMode']}}))\n"
        ),
    );
    let facts: Value = serde_json::from_str(facts.trim()).unwrap();
    assert_eq!(facts["stream"], "ACTIVE");
    assert_eq!(facts["sse"], "aws:kms");
    assert_eq!(facts["sse_key"], stack.out("DataKeyArn"));
    // The pipeline's lease item (pipeline/src/lease.rs): hash key shard_id, on-demand.
    assert_eq!(facts["keys"], serde_json::json!([["shard_id", "HASH"]]));
    assert_eq!(facts["billing"], "PAY_PER_REQUEST");

    // lake init, with exactly the stack's LakeInitArgs.
    let init = run_lake(&refs(&stack.args("LakeInitArgs")), &moto.env());
    assert!(
        init.contains(&format!(
            "athena workgroup edgeway (results s3://{bucket}/athena-results/)"
        )),
        "{init}"
    );
    assert!(init.contains("glue table edgeway.access_logs"), "{init}");

    // A gateway with exactly the stack's GatewayArgs ships a request's record to the stream.
    let origin = Origin::start("app").await;
    let clusters = format!("[cluster.app]\nendpoints = [\"{}\"]\n", origin.addr);
    let routes = "[[route]]\nname = \"app\"\nhosts = [\"app.test\"]\ncluster = \"app\"\n";
    let gw_args = stack.args("GatewayArgs");
    let gw = Gateway::start_env(
        &[("clusters.toml", &clusters), ("routes.toml", routes)],
        &refs(&gw_args),
        &moto.env(),
    )
    .await;
    let resp = reqwest::Client::new()
        .get(gw.url("/deployed/orders"))
        .header("host", "app.test")
        .header("x-request-id", "deploy-req-1")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    eventually(
        "the record sent to the stack's stream",
        Duration::from_secs(30),
        || {
            let m = gw.metrics();
            async move {
                (e2e::metric_value(&m.await, "accesslog_records_sent_total", &[]) >= 1.0)
                    .then_some(())
            }
        },
    )
    .await;

    // The pipeline with exactly the stack's PipelineArgs: stream → lake, leases in the
    // stack's table.
    let dir = tempfile::tempdir().unwrap();
    let mut args = stack.args("PipelineArgs");
    args.extend(["--worker-id".into(), "deploy-worker".into()]);
    run_to_idle(&refs(&args), &moto.env(), dir.path().join("pipeline.log"));
    let leases = boto3(
        &moto,
        &format!(
            "items = ddb.scan(TableName='{table}', ConsistentRead=True)['Items']\n\
             print(json.dumps(sorted([i['shard_id']['S'], 'checkpoint' in i] for i in items)))\n"
        ),
    );
    let leases: Vec<(String, bool)> = serde_json::from_str(leases.trim()).unwrap();
    assert!(!leases.is_empty(), "leases in the stack's table");
    assert!(
        leases
            .iter()
            .all(|(shard, checkpointed)| shard.starts_with("shardId-") && *checkpointed),
        "every shard checkpointed in the stack's table: {leases:?}"
    );

    // The outputs as the environment a deploy/k8s overlay gets (deploy/aws/stack-env → aws.env),
    // and the analyst's view through it: `lake query` with LAKE_ROOT from there finds the record.
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/aws/stack-env"
    ))
    .arg(&stack.name)
    .envs(moto.env())
    .output()
    .expect("run deploy/aws/stack-env");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env_file = String::from_utf8(out.stdout).unwrap();
    let vars: BTreeMap<&str, &str> = env_file
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    assert_eq!(vars["GATEWAY_KINESIS_STREAM"], stream);
    assert_eq!(vars["KINESIS_STREAM"], stream);
    assert_eq!(vars["PIPELINE_LEASE_TABLE"], table);
    assert_eq!(vars["LAKE_ROOT"], lake_root);
    assert_eq!(vars["AWS_REGION"], e2e::aws::REGION);
    let mut env = moto.env();
    env.extend(vars.iter().map(|(k, v)| (*k, v.to_string())));
    let rows = run_lake(
        &[
            "query",
            "--format",
            "json",
            "-q",
            "SELECT request_id, path, status, route FROM access_logs",
        ],
        &env,
    );
    assert!(rows.contains("deploy-req-1"), "{rows}");
    assert!(rows.contains("/deployed/orders"), "{rows}");
}

/// Every statement of every policy of a role: (actions, resources).
fn statements(doc: &Value) -> Vec<(Vec<String>, Vec<String>)> {
    let list = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().expect("string").to_string())
                .collect(),
            other => panic!("unexpected {other}"),
        }
    };
    doc["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .map(|s| {
            assert_eq!(s["Effect"], "Allow", "{s}");
            assert!(s.get("NotAction").is_none() && s.get("NotResource").is_none());
            (list(&s["Action"]), list(&s["Resource"]))
        })
        .collect()
}

#[tokio::test]
async fn iam_policies_name_exactly_the_created_resources() {
    let moto = Moto::shared().await;
    let stack = Stack::deploy(&moto);
    let name = &stack.name;
    // The policies and trust documents as IAM holds them, and the ARNs of what was created,
    // read from each service (not from the stack's outputs).
    let out = boto3(
        &moto,
        &format!(
            "import ast, urllib.parse\n\
             # moto hands back a CloudFormation-made inline policy as a Python dict's text.\n\
             def doc(d):\n\
             \x20   if not isinstance(d, str): return d\n\
             \x20   d = urllib.parse.unquote(d)\n\
             \x20   try: return json.loads(d)\n\
             \x20   except ValueError: return ast.literal_eval(d)\n\
             roles = {{}}\n\
             for r in ['gateway', 'pipeline', 'analyst']:\n\
             \x20   rn = '{name}-' + r\n\
             \x20   role = iam.get_role(RoleName=rn)['Role']\n\
             \x20   assert not iam.list_attached_role_policies(RoleName=rn)['AttachedPolicies']\n\
             \x20   roles[r] = {{'trust': doc(role['AssumeRolePolicyDocument']),\n\
             \x20       'policies': [doc(iam.get_role_policy(RoleName=rn, PolicyName=p)['PolicyDocument']) for p in iam.list_role_policies(RoleName=rn)['PolicyNames']]}}\n\
             res = {{}}\n\
             res['stream'] = kinesis.describe_stream_summary(StreamName='{name}-access-logs')['StreamDescriptionSummary']['StreamARN']\n\
             res['table'] = ddb.describe_table(TableName='{name}-pipeline-leases')['Table']['TableArn']\n\
             alias = [a for a in kms.list_aliases()['Aliases'] if a['AliasName'] == 'alias/{name}-data'][0]\n\
             # (ListKeys: moto's DescribeKey fails on a key whose policy came from CloudFormation)\n\
             res['key'] = [k['KeyArn'] for k in kms.list_keys()['Keys'] if k['KeyId'] == alias['TargetKeyId']][0]\n\
             res['bucket'] = [b['Name'] for b in s3.list_buckets()['Buckets'] if b['Name'].startswith('{name}-lake-')]\n\
             print(json.dumps({{'roles': roles, 'res': res}}))\n"
        ),
    );
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    let res = &v["res"];
    let buckets = res["bucket"].as_array().unwrap();
    assert_eq!(buckets.len(), 1, "{buckets:?}");
    let bucket = format!("arn:aws:s3:::{}", buckets[0].as_str().unwrap());
    let region = e2e::aws::REGION;
    let account = "123456789012";
    let glue = |what: &str| format!("arn:aws:glue:{region}:{account}:{what}");
    let (db, tbl) = (
        edgeway_record::table::DATABASE,
        edgeway_record::table::TABLE,
    );
    let glue_arns = [
        glue("catalog"),
        glue(&format!("database/{db}")),
        glue(&format!("table/{db}/{tbl}")),
        glue(&format!(
            "table/{db}/{}",
            edgeway_record::table::POLICY_CHANGES_TABLE
        )),
    ];
    let prefix = stack
        .out("LakeRoot")
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let s = |x: &Value| x.as_str().unwrap().to_string();
    let (stream, table, key) = (s(&res["stream"]), s(&res["table"]), s(&res["key"]));
    let workgroup = format!("arn:aws:athena:{region}:{account}:workgroup/edgeway");

    // Per role: every action it has, and the only resources it may name.
    let expect: [(&str, &[&str], Vec<String>); 3] = [
        (
            "gateway",
            &["kinesis:PutRecords", "kms:GenerateDataKey"],
            vec![stream.clone(), key.clone()],
        ),
        (
            "pipeline",
            &[
                "kinesis:ListShards",
                "kinesis:GetShardIterator",
                "kinesis:GetRecords",
                "dynamodb:DescribeTable",
                "dynamodb:Scan",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "s3:ListBucket",
                "s3:GetObject",
                "s3:PutObject",
                "s3:DeleteObject",
                "s3:AbortMultipartUpload",
                "glue:CreateDatabase",
                "glue:GetTable",
                "glue:CreateTable",
                "glue:UpdateTable",
                "glue:BatchCreatePartition",
                "kms:Decrypt",
                "kms:GenerateDataKey",
            ],
            [
                vec![
                    stream.clone(),
                    table.clone(),
                    bucket.clone(),
                    format!("{bucket}/{prefix}/*"),
                    key.clone(),
                ],
                glue_arns.to_vec(),
            ]
            .concat(),
        ),
        (
            "analyst",
            &[
                "athena:StartQueryExecution",
                "athena:StopQueryExecution",
                "athena:GetQueryExecution",
                "athena:GetQueryResults",
                "athena:GetWorkGroup",
                "athena:ListNamedQueries",
                "athena:GetNamedQuery",
                "athena:BatchGetNamedQuery",
                "glue:GetDatabase",
                "glue:GetTable",
                "glue:GetPartition",
                "glue:GetPartitions",
                "s3:ListBucket",
                "s3:GetBucketLocation",
                "s3:GetObject",
                "s3:PutObject",
                "s3:AbortMultipartUpload",
                "kms:Decrypt",
                "kms:GenerateDataKey",
            ],
            [
                vec![
                    workgroup.clone(),
                    bucket.clone(),
                    format!("{bucket}/{prefix}/*"),
                    format!("{bucket}/athena-results/*"),
                    key.clone(),
                ],
                glue_arns.to_vec(),
            ]
            .concat(),
        ),
    ];
    for (role, actions, allowed) in &expect {
        let policies = v["roles"][role]["policies"].as_array().unwrap();
        assert!(!policies.is_empty(), "{role} has a policy");
        let mut got_actions = BTreeSet::new();
        let mut got_resources = BTreeSet::new();
        for p in policies {
            for (acts, resources) in statements(p) {
                for a in &acts {
                    assert!(!a.contains('*'), "{role}: wildcard action {a}");
                }
                for r in &resources {
                    assert_ne!(r, "*", "{role}: `*` resource for {acts:?}");
                    assert!(
                        allowed.contains(r),
                        "{role}: {r} (for {acts:?}) is not one of the created resources {allowed:?}"
                    );
                    // S3 object ARNs end in a prefix wildcard; no other ARN has one.
                    assert!(
                        !r.contains('*') || (r.starts_with(&bucket) && r.ends_with("/*")),
                        "{role}: {r}"
                    );
                }
                got_actions.extend(acts);
                got_resources.extend(resources);
            }
        }
        let want: BTreeSet<String> = actions.iter().map(|a| a.to_string()).collect();
        assert_eq!(got_actions, want, "{role}: actions");
        let want: BTreeSet<String> = allowed.iter().cloned().collect();
        assert_eq!(
            got_resources, want,
            "{role}: every granted resource is used"
        );
    }
    // The gateway may do one thing on the stream.
    let gw = statements(&v["roles"]["gateway"]["policies"][0]);
    assert!(gw.contains(&(vec!["kinesis:PutRecords".into()], vec![stream.clone()])));

    // Analysts assume their role from this account (AnalystPrincipal left empty).
    let st = &v["roles"]["analyst"]["trust"]["Statement"][0];
    assert_eq!(
        st["Principal"]["AWS"],
        format!("arn:aws:iam::{account}:root")
    );
    assert_eq!(st["Action"], "sts:AssumeRole");
    // IRSA trust: the cluster's OIDC provider, for exactly deploy/k8s's service accounts.
    for (role, sa) in [
        ("gateway", "edgeway-gateway"),
        ("pipeline", "edgeway-pipeline"),
    ] {
        let st = &v["roles"][role]["trust"]["Statement"][0];
        assert_eq!(
            st["Principal"]["Federated"],
            format!("arn:aws:iam::{account}:oidc-provider/{OIDC_ISSUER}")
        );
        assert_eq!(st["Action"], "sts:AssumeRoleWithWebIdentity");
        let cond = &st["Condition"]["StringEquals"];
        assert_eq!(
            cond[format!("{OIDC_ISSUER}:sub")],
            format!("system:serviceaccount:{NAMESPACE}:{sa}")
        );
        assert_eq!(cond[format!("{OIDC_ISSUER}:aud")], "sts.amazonaws.com");
        let manifest = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/k8s/base/serviceaccounts.yaml"
        ))
        .expect("deploy/k8s/base/serviceaccounts.yaml");
        assert!(
            manifest.contains(&format!("name: {sa}\n")),
            "deploy/k8s names the service account {sa}"
        );
    }
}

/// Lay out `files` the way the kubelet writes a ConfigMap volume: the data in a timestamped
/// directory, `..data` a symlink to it, and each key a symlink through `..data`.
fn configmap_version(dir: &Path, version: &str, files: &[(&str, &str)]) {
    let data = dir.join(version);
    std::fs::create_dir(&data).unwrap();
    for (name, text) in files {
        std::fs::write(data.join(name), text).unwrap();
    }
}

/// The kubelet's update (atomic_writer.go): write the new timestamped directory, point
/// `..data_tmp` at it, rename it over `..data`, then remove the old directory. The top-level
/// symlinks do not change.
fn configmap_swap(dir: &Path, old: &str, new: &str, files: &[(&str, &str)]) {
    configmap_version(dir, new, files);
    std::os::unix::fs::symlink(new, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join(old)).unwrap();
}

#[tokio::test]
async fn a_configmap_symlink_swap_reloads_the_policy() {
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let clusters = format!(
        "[cluster.a]\nendpoints = [\"{}\"]\n\n[cluster.b]\nendpoints = [\"{}\"]\n",
        a.addr, b.addr
    );
    let v1 = [
        ("clusters.toml", clusters.as_str()),
        (
            "routes.toml",
            "[[route]]\nname = \"main\"\ncluster = \"a\"\n",
        ),
    ];
    let gw = Gateway::start_layout(
        |dir| {
            configmap_version(dir, "..2026_11_23_10_00_00.000000001", &v1);
            std::os::unix::fs::symlink("..2026_11_23_10_00_00.000000001", dir.join("..data"))
                .unwrap();
            for (name, _) in &v1 {
                std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
            }
        },
        &[],
        &[],
    )
    .await;
    let client = reqwest::Client::new();
    let origin_of = |client: &reqwest::Client| {
        let req = client.get(gw.url("/probe")).send();
        async move {
            let v: Value = req.await.ok()?.json().await.ok()?;
            v["origin"].as_str().map(String::from)
        }
    };
    assert_eq!(origin_of(&client).await.as_deref(), Some("a"));
    let version = |m: &str| -> String {
        m.lines()
            .find_map(|l| l.strip_prefix("gateway_policy_info{version=\""))
            .and_then(|l| l.split('"').next())
            .expect("gateway_policy_info")
            .to_string()
    };
    let before = version(&gw.metrics().await);

    let v2 = [
        ("clusters.toml", clusters.as_str()),
        (
            "routes.toml",
            "[[route]]\nname = \"main\"\ncluster = \"b\"\n",
        ),
    ];
    configmap_swap(
        &gw.policies,
        "..2026_11_23_10_00_00.000000001",
        "..2026_11_23_10_05_00.000000002",
        &v2,
    );
    eventually(
        "reload after the ..data swap",
        Duration::from_secs(10),
        || {
            let o = origin_of(&client);
            async move { (o.await.as_deref() == Some("b")).then_some(()) }
        },
    )
    .await;
    let after = version(&gw.metrics().await);
    assert_ne!(before, after, "new policy version");
    assert_eq!(
        gw.metric("gateway_policy_reloads_total", &[("result", "failure")])
            .await,
        0.0,
        "no reload saw a half-swapped directory"
    );
    // An invalid edit arriving the same way is rejected, and b keeps serving.
    let v3 = [
        ("clusters.toml", clusters.as_str()),
        (
            "routes.toml",
            "[[route]]\nname = \"main\"\ncluster = \"nope\"\n",
        ),
    ];
    configmap_swap(
        &gw.policies,
        "..2026_11_23_10_05_00.000000002",
        "..2026_11_23_10_10_00.000000003",
        &v3,
    );
    eventually("the bad edit rejected", Duration::from_secs(10), || {
        let m = gw.metric("gateway_policy_reloads_total", &[("result", "failure")]);
        async move { (m.await >= 1.0).then_some(()) }
    })
    .await;
    assert_eq!(origin_of(&client).await.as_deref(), Some("b"));
    assert!(gw.log().contains("routes.toml"), "the error names the file");
}

#[test]
fn every_binary_names_its_version_and_commit() {
    for name in ["gateway", "pipeline", "lake"] {
        let out = Command::new(bin(name)).arg("--version").output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        // The commit is `EDGEWAY_GIT_COMMIT` at build time (the Dockerfile and
        // `scripts/build --profile dist` set it), "unknown" otherwise.
        let rest = text
            .trim()
            .strip_prefix(&format!("{name} {} (commit ", env!("CARGO_PKG_VERSION")))
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{name} --version: {text}"));
        assert!(
            !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric()),
            "{name} --version: {text}"
        );
    }
}

/// A development CA and server certificate made by `gateway gen-certs`: (ca.pem, tls.crt,
/// tls.key) as text.
fn dev_certs() -> (String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin("gateway"))
        .args(["gen-certs", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    (read("ca.pem"), read("server.pem"), read("server.key"))
}

fn trusting(ca: &str, gw: &Gateway) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .resolve("api.localhost", gw.https)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_tls_secret_symlink_swap_rotates_the_certificate() {
    // The gateway's TLS Secret, as the kubelet lays out a Secret volume (deploy/k8s mounts
    // edgeway-gateway-tls at /etc/edgeway/tls and passes tls.crt / tls.key).
    let a = Origin::start("a").await;
    let (ca1, crt1, key1) = dev_certs();
    let (ca2, crt2, key2) = dev_certs();
    let secret = tempfile::tempdir().unwrap();
    let v1 = [("tls.crt", crt1.as_str()), ("tls.key", key1.as_str())];
    configmap_version(secret.path(), "..2026_11_23_10_00_00.000000001", &v1);
    std::os::unix::fs::symlink(
        "..2026_11_23_10_00_00.000000001",
        secret.path().join("..data"),
    )
    .unwrap();
    for (name, _) in &v1 {
        std::os::unix::fs::symlink(format!("..data/{name}"), secret.path().join(name)).unwrap();
    }
    let (crt, key) = (secret.path().join("tls.crt"), secret.path().join("tls.key"));
    let clusters = format!("[cluster.a]\nendpoints = [\"{}\"]\n", a.addr);
    let gw = Gateway::start_env(
        &[
            ("clusters.toml", &clusters),
            (
                "routes.toml",
                "[[route]]\nname = \"all\"\ncluster = \"a\"\n",
            ),
        ],
        &[
            "--tls-cert",
            crt.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    let url = format!("https://api.localhost:{}/", gw.https.port());
    let (old, new) = (trusting(&ca1, &gw), trusting(&ca2, &gw));
    assert_eq!(old.get(&url).send().await.unwrap().status(), 200);
    assert!(new.get(&url).send().await.is_err(), "not yet the new one");

    configmap_swap(
        secret.path(),
        "..2026_11_23_10_00_00.000000001",
        "..2026_11_23_10_05_00.000000002",
        &[("tls.crt", crt2.as_str()), ("tls.key", key2.as_str())],
    );
    eventually(
        "the new certificate after the ..data swap",
        Duration::from_secs(10),
        || {
            let req = new.get(&url).send();
            async move { req.await.ok().filter(|r| r.status() == 200).map(|_| ()) }
        },
    )
    .await;
    // A new connection (the old client's kept-alive one was set up before the swap).
    let old = trusting(&ca1, &gw);
    assert!(old.get(&url).send().await.is_err(), "the old one is gone");
}
