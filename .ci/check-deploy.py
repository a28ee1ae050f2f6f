#!/usr/bin/env python3
"""Checks docker-compose.yml, deploy/nginx.conf and the Dockerfile for the properties the
deployment depends on (no Docker engine runs on the CI machines, so nothing is started).
Needs PyYAML. Exits non-zero naming every property that does not hold."""
import re
import sys

import yaml

problems = []


def need(condition, message):
    if not condition:
        problems.append(message)


compose = yaml.safe_load(open("docker-compose.yml"))
services = compose.get("services", {})
for name in ["mysql", "redis", "rabbitmq", "elasticsearch", "nginx", "api", "worker"]:
    need(name in services, f"service {name} is missing")

for name, service in services.items():
    need("healthcheck" in service, f"{name} has no healthcheck")
    for dependency, condition in (service.get("depends_on") or {}).items():
        need(isinstance(condition, dict) and condition.get("condition") == "service_healthy",
             f"{name} depends on {dependency} without condition: service_healthy")

for name in ["api", "worker"]:
    service = services.get(name, {})
    need("container_name" not in service, f"{name} has a container_name: it could not scale")
    env = service.get("environment", {})
    for variable in ["CHATSYS_DATABASE_URL", "CHATSYS_REDIS_URL", "CHATSYS_AMQP_URL", "CHATSYS_ELASTICSEARCH_URL"]:
        need(variable in env, f"{name} lacks {variable}")
    need(set((service.get("depends_on") or {})) >= {"mysql", "redis", "rabbitmq", "elasticsearch"},
         f"{name} does not wait for every dependency")
    need(service.get("command") == [{"api": "serve", "worker": "worker"}[name]], f"{name} runs the wrong subcommand")
need("ports" not in services.get("api", {}), "api publishes a fixed host port: only nginx may")
need(services.get("api", {}).get("build") is not None, "api is not built from this repository")

mysql = services.get("mysql", {})
need(str(mysql.get("image", "")).startswith("mysql:8.4"), "mysql is not MySQL 8.4")
need("--character-set-server=utf8mb4" in (mysql.get("command") or []), "mysql does not default to utf8mb4")
redis = services.get("redis", {})
need("--appendonly" in (redis.get("command") or []) and "yes" in (redis.get("command") or []), "redis runs without AOF")
need("noeviction" in (redis.get("command") or []), "redis may evict counters")
rabbit = services.get("rabbitmq", {})
need("management" in str(rabbit.get("image", "")), "rabbitmq has no management UI")
es = services.get("elasticsearch", {})
es_env = es.get("environment", {})
need(str(es.get("image", "")).split(":")[-1].startswith("8."), "elasticsearch is not version 8")
need(es_env.get("discovery.type") == "single-node", "elasticsearch is not single-node")
need(str(es_env.get("xpack.security.enabled")) == "false", "elasticsearch security is on (local use expects it off)")
need("-Xmx" in str(es_env.get("ES_JAVA_OPTS", "")), "elasticsearch heap is not capped")
nginx = services.get("nginx", {})
need(any("nginx.conf" in str(v) for v in nginx.get("volumes", [])), "nginx does not mount deploy/nginx.conf")

named = set((compose.get("volumes") or {}).keys())
for name in ["mysql", "redis", "rabbitmq", "elasticsearch"]:
    mounts = [str(v).split(":")[0] for v in services.get(name, {}).get("volumes", [])]
    need(any(m in named for m in mounts), f"{name} keeps its data in no named volume")

conf = open("deploy/nginx.conf").read()
need(re.search(r"resolver\s+127\.0\.0\.11", conf), "nginx does not use Docker's DNS")
need(re.search(r"server\s+api:8080\s+resolve", conf), "nginx does not re-resolve the api replicas")
need(re.search(r"keepalive\s+\d+", conf) and 'proxy_set_header Connection ""' in conf, "no keep-alive to the upstreams")
need(re.search(r"client_max_body_size\s+\d+[km]", conf), "no request size limit")
need("X-Request-Id" in conf, "X-Request-Id is not passed through")

dockerfile = open("Dockerfile").read()
stages = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
need(len(stages) >= 2, "the Dockerfile is not multi-stage")
need("cargo build --release --locked -p chatsys" in dockerfile, "the Dockerfile does not build the README's binary")
need(re.search(r"^USER\s+(?!root)\S+", dockerfile, re.M), "the image runs as root")
need(dockerfile.count("cargo build") >= 2, "no dependency layer before the sources are copied")

if problems:
    print("deployment checks failed:")
    for p in problems:
        print(f"  - {p}")
    sys.exit(1)
print(f"deployment checks passed: {len(services)} services, nginx.conf, Dockerfile")
