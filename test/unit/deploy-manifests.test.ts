/**
 * The deployment files agree with the code: docker-compose.yml (+ docker-compose.gpu.yml), the
 * Kubernetes manifests of deploy/k8s (rendered per overlay), the Dockerfiles and the NATS
 * configuration, checked against the step registry (services/lib/steps), the topology's
 * names (services/lib/bus/subjects.ts) and the configuration table (services/lib/shared/config.ts).
 *
 * No Docker engine, cluster, kustomize or helm binary is on these machines (neither npm nor
 * Debian ships kustomize), so the overlays are rendered here by the subset of Kustomize that
 * they use: resources (files and folders), namespace, labels, images, and JSON 6902 patches
 * with a kind + name-regex target. A manifest that needs more fails the render, loudly.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import { STREAMS, stageConsumer } from '../../services/lib/bus/subjects.js';
import { settings } from '../../services/lib/shared/config.js';
import { loadStages } from '../../services/lib/steps/registry.js';
import { REPO_ROOT } from '../helpers/paths.js';

type Obj = Record<string, any>;
const K8S = path.join(REPO_ROOT, 'deploy/k8s');
const SETTINGS = new Set(Object.values(settings).map((s) => s.env));
const read = (p: string) => readFileSync(path.join(REPO_ROOT, p), 'utf8');
const yamlFile = (file: string): Obj[] => parseAllDocuments(readFileSync(file, 'utf8')).map((d) => {
  if (d.errors.length) throw new Error(`${file}: ${d.errors[0]!.message}`);
  return d.toJS() as Obj;
}).filter(Boolean);

// --- the Kustomize subset -------------------------------------------------------------------
const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition']);

function pointer(doc: Obj, p: string): { parent: any; key: string } {
  const parts = p.split('/').slice(1).map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'));
  let parent: any = doc;
  for (const part of parts.slice(0, -1)) {
    if (parent[part] === undefined) throw new Error(`patch path ${p}: no ${part}`);
    parent = parent[part];
  }
  return { parent, key: parts.at(-1)! };
}

function applyJson6902(doc: Obj, ops: Obj[]): void {
  for (const op of ops) {
    const { parent, key } = pointer(doc, op.path);
    if (op.op === 'replace') {
      if (parent[key] === undefined) throw new Error(`replace ${op.path}: nothing there`);
      parent[key] = op.value;
    } else if (op.op === 'add') {
      if (Array.isArray(parent) && key === '-') parent.push(op.value); else parent[key] = op.value;
    } else if (op.op === 'remove') {
      delete parent[key];
    } else throw new Error(`unsupported patch op ${op.op}`);
  }
}

function podSpecs(doc: Obj): Obj[] {
  return doc.spec?.template?.spec ? [doc.spec.template.spec] : [];
}

function render(dir: string): Obj[] {
  const k = parse(readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8')) as Obj;
  const known = new Set(['apiVersion', 'kind', 'namespace', 'labels', 'resources', 'images', 'patches']);
  for (const field of Object.keys(k)) assert.ok(known.has(field), `${dir}: kustomization field ${field} is not rendered by this test`);
  let docs: Obj[] = [];
  for (const resource of k.resources ?? []) {
    const full = path.join(dir, resource);
    docs.push(...(statSync(full).isDirectory() ? render(full) : yamlFile(full)));
  }
  for (const patch of k.patches ?? []) {
    const name = new RegExp(`^(?:${patch.target.name})$`);
    const targets = docs.filter((d) => d.kind === patch.target.kind && name.test(d.metadata?.name));
    assert.ok(targets.length > 0, `${dir}: patch target ${JSON.stringify(patch.target)} matches nothing`);
    for (const t of targets) applyJson6902(t, parse(patch.patch) as Obj[]);
  }
  if (k.namespace) docs = docs.map((d) => (CLUSTER_SCOPED.has(d.kind) ? d : { ...d, metadata: { ...d.metadata, namespace: k.namespace } }));
  for (const { pairs } of k.labels ?? []) for (const d of docs) d.metadata.labels = { ...d.metadata.labels, ...pairs };
  for (const image of k.images ?? []) {
    for (const d of docs) {
      for (const spec of podSpecs(d)) {
        for (const c of spec.containers ?? []) if (c.image === image.name) c.image = `${image.newName ?? image.name}:${image.newTag}`;
      }
    }
  }
  return docs;
}

// --- helpers over rendered objects ----------------------------------------------------------
const find = (docs: Obj[], kind: string, name: string) => docs.find((d) => d.kind === kind && d.metadata.name === name);
const deploymentName = (step: string) => `stage-${step.replaceAll('_', '-')}`;
const container = (d: Obj) => d.spec.template.spec.containers[0] as Obj;

let steps: string[];
let modelSteps: Set<string>;
before(async () => {
  const stages = await loadStages();
  steps = [...stages.keys()];
  // A step whose manifest names models is a model stage: the ones on GPUs.
  modelSteps = new Set([...stages.values()].filter((s) => s.models).map((s) => s.step));
  assert.ok(steps.length >= 7 && modelSteps.size >= 5, `steps found: ${steps.join(', ')}`);
});

describe('Kubernetes manifests (deploy/k8s)', () => {
  const overlays = { cluster: render(path.join(K8S, 'overlays/cluster')), gpu: render(path.join(K8S, 'overlays/gpu')) };
  const config = find(overlays.cluster, 'ConfigMap', 'photolab-config')!;

  test('every step has a Deployment running its worker, probed on its own health', () => {
    for (const docs of Object.values(overlays)) {
      const stageDeployments = docs.filter((d) => d.kind === 'Deployment' && d.metadata.name.startsWith('stage-'));
      assert.deepEqual(stageDeployments.map((d) => d.metadata.name).sort(), steps.map(deploymentName).sort(), 'one Deployment per registered step, no other');
      for (const step of steps) {
        const d = find(docs, 'Deployment', deploymentName(step))!;
        const c = container(d);
        assert.deepEqual(c.args, ['node', 'dist/services/stage-worker/main.js', step]);
        assert.equal(d.spec.replicas, undefined, `${step}: replicas left to KEDA`);
        const port = c.ports.find((p: Obj) => p.name === 'metrics');
        assert.equal(String(port.containerPort), config.data.STAGE_METRICS_PORT, `${step}: probe port is STAGE_METRICS_PORT`);
        assert.equal(c.livenessProbe.httpGet.path, '/healthz');
        assert.equal(c.readinessProbe.httpGet.path, '/readyz');
        assert.equal(c.livenessProbe.httpGet.port, 'metrics');
        assert.deepEqual(c.envFrom.map((e: Obj) => e.configMapRef?.name ?? e.secretRef?.name), ['photolab-config', 'photolab-secrets']);
        const mounts = c.volumeMounts.map((m: Obj) => m.mountPath);
        assert.ok(mounts.includes(config.data.FRAME_CACHE_DIR), `${step}: frame cache mounted at FRAME_CACHE_DIR`);
        if (modelSteps.has(step)) assert.ok(mounts.includes(config.data.MODELS_DIR), `${step}: models mounted at MODELS_DIR`);
      }
    }
  });

  test('every step has a KEDA ScaledObject on the backlog of its own durable consumer', () => {
    for (const docs of Object.values(overlays)) {
      const scaled = docs.filter((d) => d.kind === 'ScaledObject');
      assert.equal(scaled.length, steps.length);
      for (const step of steps) {
        const so = find(docs, 'ScaledObject', deploymentName(step))!;
        assert.ok(so, `${step}: ScaledObject`);
        assert.equal(so.spec.scaleTargetRef.name, deploymentName(step));
        assert.ok(so.spec.minReplicaCount >= 1 && so.spec.maxReplicaCount >= so.spec.minReplicaCount);
        const [trigger] = so.spec.triggers;
        assert.equal(trigger.type, 'nats-jetstream');
        assert.equal(trigger.metadata.stream, STREAMS.stages, 'the stream of the topology code');
        assert.equal(trigger.metadata.consumer, stageConsumer(step), 'the consumer of the topology code');
        assert.equal(trigger.metadata.account, '$G');
        assert.ok(Number(trigger.metadata.lagThreshold) > 0);
        // A clustered scaler asks every server by name under this host: the chart's headless service.
        assert.match(trigger.metadata.natsServerMonitoringEndpoint, /^nats-headless\.photolab\.svc\.cluster\.local:8222$/);
      }
    }
  });

  test('every environment variable is a documented setting', () => {
    for (const [overlay, docs] of Object.entries(overlays)) {
      for (const d of docs) {
        const names = [
          ...(d.kind === 'ConfigMap' ? Object.keys(d.data ?? {}) : []),
          ...podSpecs(d).flatMap((s) => s.containers.flatMap((c: Obj) => (c.env ?? []).map((e: Obj) => e.name))),
        ];
        for (const name of names) assert.ok(SETTINGS.has(name), `${overlay}: ${d.kind}/${d.metadata.name} sets ${name}, which services/lib/shared/config.ts does not know`);
      }
    }
  });

  test('the cluster settings: three NATS URLs, R3, FRAME_TRANSPORT=auto, ClickHouse of the operator', () => {
    const urls = config.data.NATS_URL.split(',');
    assert.deepEqual(urls, [0, 1, 2].map((i) => `nats://nats-${i}.nats-headless:4222`));
    assert.equal(config.data.NATS_REPLICAS, '3');
    assert.equal(config.data.FRAME_TRANSPORT, 'auto', 'pods on other nodes read frames from the bus');
    const chi = yamlFile(path.join(K8S, 'clickhouse/clickhouse-installation.yaml'))[0]!;
    assert.equal(chi.kind, 'ClickHouseInstallation');
    assert.equal(new URL(config.data.CLICKHOUSE_URL).hostname, `clickhouse-${chi.metadata.name}`, 'the service the operator makes');
    assert.ok(Object.keys(chi.spec.configuration.users).some((k) => k.startsWith(`${config.data.CLICKHOUSE_USER}/`)), 'the user the services log in as');
    const nats = parse(readFileSync(path.join(K8S, 'nats/values.yaml'), 'utf8')) as Obj;
    assert.equal(nats.config.cluster.enabled, true);
    assert.equal(nats.config.cluster.replicas, 3);
    assert.equal(nats.config.jetstream.enabled, true);
    assert.equal(nats.config.jetstream.fileStore.enabled, true);
    assert.equal(nats.config.monitor.port, 8222);
    assert.ok(nats.config.jetstream.memoryStore.maxSize, 'memory for the frames stream');
    assert.match(String(nats.config.merge.max_payload), /8MB/);
  });

  test('the edge: Service and Ingress on its HTTP_PORT, probes on its own routes', () => {
    const docs = overlays.cluster;
    const edge = find(docs, 'Deployment', 'edge')!;
    const c = container(edge);
    assert.deepEqual(c.args, ['node', 'dist/services/edge/main.js']);
    const http = c.ports.find((p: Obj) => p.name === 'http');
    assert.equal(String(http.containerPort), config.data.HTTP_PORT);
    assert.equal(c.readinessProbe.httpGet.path, '/api/health');
    assert.equal(c.livenessProbe.httpGet.path, '/api/hello');
    const service = find(docs, 'Service', 'edge')!;
    assert.deepEqual(service.spec.selector, edge.spec.selector.matchLabels);
    assert.equal(service.spec.ports[0].targetPort, 'http');
    const ingress = find(docs, 'Ingress', 'edge')!;
    const backend = ingress.spec.rules[0].http.paths[0].backend.service;
    assert.equal(backend.name, 'edge');
    assert.ok(service.spec.ports.some((p: Obj) => p.name === backend.port.name));
    const sink = find(docs, 'Deployment', 'metrics-sink')!;
    assert.deepEqual(container(sink).args, ['node', 'dist/services/metrics-sink/main.js']);
  });

  test('images: one CPU image everywhere; the GPU overlay puts model stages on the CUDA image with a GPU each', () => {
    for (const d of overlays.cluster.filter((x) => x.kind === 'Deployment')) {
      assert.equal(container(d).image, 'ghcr.io/photolab/photolab-pipeline:0.1.0', d.metadata.name);
      assert.equal(d.spec.template.spec.securityContext.runAsNonRoot, true);
      assert.equal(container(d).resources.limits['nvidia.com/gpu'], undefined);
    }
    for (const d of overlays.gpu.filter((x) => x.kind === 'Deployment')) {
      const c = container(d);
      const step = d.metadata.labels['photolab.io/step'];
      if (step && modelSteps.has(step)) {
        assert.equal(c.image, 'ghcr.io/photolab/photolab-pipeline-gpu:0.1.0', d.metadata.name);
        assert.equal(c.resources.limits['nvidia.com/gpu'], 1);
        assert.equal(c.env.find((e: Obj) => e.name === 'ONNX_PROVIDERS').value, 'cuda,cpu');
      } else {
        assert.equal(c.image, 'ghcr.io/photolab/photolab-pipeline:0.1.0', `${d.metadata.name} stays on the CPU image`);
        assert.equal(c.resources.limits['nvidia.com/gpu'], undefined);
      }
    }
  });
});

describe('docker-compose.yml', () => {
  const compose = parse(read('docker-compose.yml'), { merge: true }) as Obj;
  const gpu = parse(read('docker-compose.gpu.yml'), { merge: true }) as Obj;
  const services = compose.services as Record<string, Obj>;
  const product = Object.entries(services).filter(([, s]) => s.image === 'photolab-pipeline:latest');

  test('the HEALTHCHECK of the image knows every service that has a port to probe (edge, stages)', () => {
    const check = read('scripts/healthcheck.mjs');
    for (const [name, s] of product) {
      const script = /dist\/services\/([\w-]+)\/main\.js/.exec(s.command.join(' '))?.[1];
      if (script === 'metrics-sink') continue; // no HTTP port: healthy while it runs
      assert.ok(check.includes(`/${script}\\/main\\.js/`), `healthcheck.mjs probes ${name} (${script}/main.js)`);
    }
  });

  test('NATS (with its config in deploy/), ClickHouse, the edge, every step and the sink', () => {
    const commands = Object.fromEntries(product.map(([name, s]) => [name, s.command.join(' ')]));
    assert.equal(commands.edge, 'node dist/services/edge/main.js');
    assert.equal(commands['metrics-sink'], 'node dist/services/metrics-sink/main.js');
    for (const step of steps) assert.equal(commands[step], `node dist/services/stage-worker/main.js ${step}`, `service for step ${step}`);
    assert.equal(product.length, steps.length + 2, 'nothing else runs the product image');
    const nats = services.nats!;
    const mount = nats.volumes.find((v: string) => v.includes('nats-server.conf')) as string;
    const [hostPath, containerPath] = mount.split(':');
    assert.ok(existsSync(path.join(REPO_ROOT, hostPath!)), `${hostPath} exists`);
    assert.deepEqual(nats.command, ['-c', containerPath]);
    const conf = read(hostPath!);
    assert.match(conf, /max_payload:\s*8MB/);
    assert.match(conf, /jetstream\s*{[^}]*store_dir:\s*\/data/);
    assert.match(conf, /http_port:\s*8222/, 'monitoring for the healthcheck');
    assert.ok(services.clickhouse, 'ClickHouse');
  });

  test('every environment variable of a product service is a documented setting; URLs name the compose services', () => {
    for (const [name, s] of product) {
      for (const key of Object.keys(s.environment)) assert.ok(SETTINGS.has(key), `${name} sets ${key}, which services/lib/shared/config.ts does not know`);
      assert.equal(new URL(s.environment.NATS_URL).hostname, 'nats');
      assert.equal(new URL(s.environment.CLICKHOUSE_URL).hostname, 'clickhouse');
      assert.equal(s.environment.NATS_REPLICAS, '1', 'one NATS server: R1');
      assert.equal(s.build.dockerfile, 'deploy/Dockerfile');
    }
    for (const [name, s] of Object.entries(gpu.services as Record<string, Obj>)) {
      for (const key of Object.keys(s.environment ?? {})) assert.ok(SETTINGS.has(key), `gpu ${name} sets ${key}`);
    }
  });

  test('ports: the edge publishes its HTTP_PORT', () => {
    const edge = services.edge!;
    assert.deepEqual(edge.ports, [`${edge.environment.HTTP_PORT}:${edge.environment.HTTP_PORT}`]);
  });

  test('the GPU override reserves a GPU for every model stage, and only for them', () => {
    const overridden = Object.keys(gpu.services).sort();
    assert.deepEqual(overridden, [...modelSteps].sort());
    for (const [name, s] of Object.entries(gpu.services as Record<string, Obj>)) {
      assert.equal(s.build.dockerfile, 'deploy/Dockerfile.gpu', name);
      assert.equal(s.environment.ONNX_PROVIDERS, 'cuda,cpu', name);
      const device = s.deploy.resources.reservations.devices[0];
      assert.equal(device.driver, 'nvidia', name);
      assert.deepEqual(device.capabilities, ['gpu'], name);
    }
  });
});

describe('Dockerfiles', () => {
  const cpu = read('deploy/Dockerfile');
  const gpu = read('deploy/Dockerfile.gpu');
  const lastStage = (text: string) => text.slice(text.lastIndexOf('\nFROM '));
  const envOf = (text: string) => Object.fromEntries([...lastStage(text).matchAll(/^ENV (.+)$/gm)].flatMap((m) => m[1]!.split(/\s+/).map((kv) => kv.split('='))));

  test('multi-stage, glibc >= 2.38 bases, non-root, HEALTHCHECK, no weights', () => {
    for (const [name, text] of [['Dockerfile', cpu], ['Dockerfile.gpu', gpu]] as const) {
      assert.ok((text.match(/^FROM /gm) ?? []).length >= 2, `${name}: multi-stage`);
      assert.match(lastStage(text), /^USER (node|1000)$/m, `${name}: non-root`);
      assert.match(lastStage(text), /^HEALTHCHECK .*scripts\/healthcheck\.mjs/m, name);
      assert.doesNotMatch(text, /models\/weights|\.onnx/, `${name}: no weights in the image`);
      assert.ok(existsSync(path.join(REPO_ROOT, 'scripts/healthcheck.mjs')));
      for (const key of Object.keys(envOf(text)).filter((k) => k !== 'NODE_ENV')) assert.ok(SETTINGS.has(key), `${name}: ENV ${key} is a setting`);
      assert.equal(envOf(text).MODELS_DIR, '/models', `${name}: models are mounted at /models`);
    }
    // Debian trixie has glibc 2.41, Ubuntu 24.04 2.39: the uWebSockets.js binary loads as shipped.
    assert.match(cpu, /^FROM node:22-trixie-slim AS build$/m);
    assert.match(lastStage(cpu), /^FROM node:22-trixie-slim$/m);
    assert.match(gpu, /^FROM nvidia\/cuda:12\.[\d.]+-cudnn-runtime-ubuntu24\.04/m);
    assert.match(gpu, /ONNXRUNTIME_NODE_INSTALL=cuda12/);
    assert.equal(envOf(gpu).ONNX_PROVIDERS, 'cuda,cpu');
  });

  test('exposed ports are the services\' HTTP_PORT and STAGE_METRICS_PORT', () => {
    const env = envOf(cpu);
    const exposed = lastStage(cpu).match(/^EXPOSE (.+)$/m)![1]!.split(/\s+/);
    assert.deepEqual(exposed.sort(), [env.HTTP_PORT, env.STAGE_METRICS_PORT].sort());
    assert.ok(lastStage(gpu).match(/^EXPOSE (.+)$/m)![1]!.split(/\s+/).includes(envOf(gpu).STAGE_METRICS_PORT!));
  });

  test('.dockerignore keeps node_modules, dist, data and weights out of the build context', () => {
    const ignored = read('.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    for (const p of ['node_modules', 'dist', 'data', 'models/weights']) assert.ok(ignored.includes(p), p);
  });
});
