// Package webhook tests the webhooks (issue 12, item 4) and media messages
// (item 5) on the real stack: real Kafka, Cassandra and etcd (test/testdeps),
// the imcluster binary's message and push processes configured by the
// IM_WEBHOOK_* environment the operator renders, devices on pkg/client and
// a test receiver built on pkg/sdk's WebhookHandler.
package webhook
