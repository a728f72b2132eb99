// Package browser holds the tests of the TypeScript device SDK (sdk/ts)
// and of the web chat page (web/) against the real stack: each test starts
// its own isolated imcluster (Kafka topic, Cassandra keyspace, etcd prefix,
// one message and two push processes) on the shared servers, then runs
// `node --test` (sdk_test.go) or drives headless Chromium (web_test.go).
//
// Node and npm (and Chromium for the page) must be installed; the SDK's npm
// dependencies are installed by the test itself into sdk/ts/node_modules
// (npm ci, skipped when package-lock.json has not changed since the last
// install). Without them the tests skip, and fail under CI=true.
package browser
