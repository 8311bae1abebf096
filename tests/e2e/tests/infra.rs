//! The deployment files of `infra/` against the tools that read them: Helm renders and lints the
//! chart (`infra/helm/onair`), and every OnAir container it renders loads its configuration in
//! the real binary from exactly the environment Kubernetes would give it (secrets resolved,
//! `$(VAR)` references expanded); docker-compose reads the compose file; the role
//! configurations of `infra/config` load.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

const CHART: &str = "infra/helm/onair";

/// `helm template` with `sets` (`key=value`), the documents as JSON (Python's YAML parser).
fn render(sets: &[&str]) -> Result<Vec<Value>, String> {
    let mut cmd = Command::new("helm");
    cmd.args(["template", "t", CHART, "--namespace", "live"]).current_dir(repo_root());
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().expect("helm (bash infra/setup.sh test)");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let mut py = Command::new("python3")
        .args(["-c", "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with yaml");
    std::io::Write::write_all(&mut py.stdin.take().expect("stdin"), &out.stdout).expect("write");
    let json = py.wait_with_output().expect("python3");
    assert!(json.status.success(), "the rendered chart is not YAML");
    Ok(serde_json::from_slice(&json.stdout).expect("json"))
}

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter().find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

/// The environment Kubernetes gives the first pod of `workload`'s `container`: literal values with
/// `$(VAR)` expanded from the entries before them, the pod's name and namespace, and secret keys
/// from the rendered Secret.
fn pod_env(docs: &[Value], workload: &Value, pod: &str) -> BTreeMap<String, String> {
    let secret = docs.iter().find(|d| d["kind"] == "Secret").expect("Secret");
    let container = &workload["spec"]["template"]["spec"]["containers"][0];
    let mut env = BTreeMap::new();
    for e in container["env"].as_array().expect("env") {
        let name = e["name"].as_str().expect("name").to_string();
        let value = if let Some(v) = e["value"].as_str() {
            env.iter().fold(v.to_string(), |v, (k, x): (&String, &String)| v.replace(&format!("$({k})"), x))
        } else if let Some(path) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match path {
                "metadata.name" => pod.to_string(),
                "metadata.namespace" => "live".to_string(),
                other => panic!("unexpected fieldRef {other}"),
            }
        } else {
            let key = &e["valueFrom"]["secretKeyRef"];
            assert_eq!(key["name"], secret["metadata"]["name"], "{name}");
            let key = key["key"].as_str().expect("key");
            secret["stringData"][key].as_str().unwrap_or_else(|| panic!("{name}: no secret key {key}")).to_string()
        };
        env.insert(name, value);
    }
    env
}

/// `onair config` in exactly `env` (plus PATH): the effective configuration, or the error.
fn load_config(env: &BTreeMap<String, String>, file: Option<&Path>) -> Result<String, String> {
    let mut cmd = Command::new(onair_binary());
    cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default()).envs(env);
    if let Some(f) = file {
        cmd.arg("--config").arg(f);
    }
    let out = cmd.arg("config").output().expect("onair");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn the_helm_chart_lints_and_every_onair_pod_loads_its_configuration() {
    let lint = Command::new("helm").args(["lint", "--strict", CHART]).current_dir(repo_root()).output().expect("helm");
    assert!(lint.status.success(), "{}", String::from_utf8_lossy(&lint.stdout));

    let docs = render(&[]).expect("the defaults render");
    let kinds: Vec<String> = docs.iter().map(|d| format!("{}/{}", d["kind"].as_str().unwrap_or("?"), d["metadata"]["name"].as_str().unwrap_or("?"))).collect();
    println!("rendered with the defaults: {}", kinds.join(", "));
    let secret = docs.iter().find(|d| d["kind"] == "Secret").expect("Secret");
    let origin = named(&docs, "StatefulSet", "t-onair-origin").expect("origin StatefulSet");
    let relay = named(&docs, "StatefulSet", "t-onair-relay-eu").expect("relay StatefulSet");
    let usher = named(&docs, "Deployment", "t-onair-usher").expect("usher Deployment");
    let redis = named(&docs, "StatefulSet", "t-onair-redis").expect("redis StatefulSet");
    assert!(named(&docs, "StatefulSet", "t-onair-postgres").is_some(), "postgres StatefulSet");
    assert!(named(&docs, "PodDisruptionBudget", "t-onair-relay-eu").is_some());
    assert_eq!(named(&docs, "Service", "t-onair-ingest").expect("ingest Service")["spec"]["ports"][1]["protocol"], "UDP");

    // Each OnAir role loads, with the identity and wiring the chart means it to have.
    let origin_env = pod_env(&docs, origin, "t-onair-origin-0");
    let relay_env = pod_env(&docs, relay, "t-onair-relay-eu-0");
    let usher_env = pod_env(&docs, usher, "t-onair-usher-5d9f-x2x");
    for (role, env) in [("origin", &origin_env), ("relay", &relay_env), ("usher", &usher_env)] {
        let config = load_config(env, None).unwrap_or_else(|e| panic!("the {role} pod's configuration does not load: {e}"));
        assert!(config.contains(&format!("registry = {:?}", secret["stringData"]["registry-url"].as_str().expect("registry-url"))), "{role}: {config}");
        assert!(config.contains("http_addr = \"0.0.0.0:8080\""), "{role}: {config}");
        assert!(config.contains("part_target_ms = 200"), "{role}: {config}");
    }
    let origin_config = load_config(&origin_env, None).expect("origin");
    assert!(origin_config.contains("node_id = \"t-onair-origin-0\""), "{origin_config}");
    assert!(origin_config.contains("public_url = \"http://t-onair-origin-0.t-onair-origin.live.svc.cluster.local:8080\""), "{origin_config}");
    assert!(origin_config.contains(&format!("database = {:?}", secret["stringData"]["database-url"].as_str().expect("database-url"))), "{origin_config}");
    let relay_config = load_config(&relay_env, None).expect("relay");
    assert!(relay_config.contains("public_url = \"http://t-onair-relay-eu-0.t-onair-relay-eu.live.svc.cluster.local:8080\""), "{relay_config}");
    assert!(relay_config.contains("roles = [\"relay\"]") && relay_config.contains("capacity_viewers = 5000"), "{relay_config}");
    assert_eq!(relay["spec"]["template"]["spec"]["containers"][0]["args"][0], "edge");
    let usher_config = load_config(&usher_env, None).expect("usher");
    assert!(usher_config.contains("eu = [\"192.0.2.0/24\"]"), "{usher_config}");
    // The bundled Redis requires the password the nodes' registry URL carries.
    let redis_password = pod_env(&docs, redis, "t-onair-redis-0")["REDIS_PASSWORD"].clone();
    assert!(redis_password.len() >= 32 && origin_env["ONAIR_CLUSTER__REGISTRY"].contains(&format!(":{redis_password}@t-onair-redis:6379")));

    // Redis and PostgreSQL of one's own instead of the bundled ones.
    let docs = render(&[
        "redis.enabled=false",
        "registry.url=rediss://:pw@redis.example.net:6380/0",
        "postgres.enabled=false",
        "database.url=postgres://onair:pw@db.example.net/onair?sslmode=require",
        "origin.replicas=2",
        "relays.publicUrl=https://$(POD_NAME).live.example.com",
    ])
    .expect("external engines render");
    assert!(named(&docs, "StatefulSet", "t-onair-redis").is_none() && named(&docs, "StatefulSet", "t-onair-postgres").is_none());
    let relay = named(&docs, "StatefulSet", "t-onair-relay-eu").expect("relay");
    let env = pod_env(&docs, relay, "t-onair-relay-eu-1");
    let config = load_config(&env, None).expect("relay with external engines");
    assert!(config.contains("registry = \"rediss://:pw@redis.example.net:6380/0\"") && config.contains("public_url = \"https://t-onair-relay-eu-1.live.example.com\""), "{config}");
    let origin = named(&docs, "StatefulSet", "t-onair-origin").expect("origin");
    assert_eq!(origin["spec"]["replicas"], 2);
    assert_eq!(pod_env(&docs, origin, "t-onair-origin-1")["ONAIR_DATABASE"], "postgres://onair:pw@db.example.net/onair?sslmode=require");

    // What cannot work is refused at install, with the reason.
    let err = render(&["redis.enabled=false"]).expect_err("no registry");
    assert!(err.contains("set registry.url or redis.enabled"), "{err}");
    let err = render(&["postgres.enabled=false", "origin.replicas=2"]).expect_err("two origins, no shared database");
    assert!(err.contains("several origins must share channels and keys"), "{err}");
}

#[test]
fn the_compose_file_and_the_role_configurations_load() {
    let out = Command::new("docker-compose")
        .args(["-f", "infra/compose/docker-compose.yml", "config", "-q"])
        .current_dir(repo_root())
        .output()
        .expect("docker-compose (bash infra/setup.sh test)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for role in ["origin", "relay", "usher"] {
        let file = repo_root().join(format!("infra/config/{role}.toml"));
        let config = load_config(&BTreeMap::new(), Some(&file)).unwrap_or_else(|e| panic!("{role}.toml: {e}"));
        assert!(config.contains("registry = \"redis://:CHANGE-ME@redis.example.net:6379/0\""), "{role}: {config}");
    }
}
