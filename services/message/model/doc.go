// Package model holds the message tier's own data shapes: conversation ids,
// the Kafka record every conversation change travels as, the opaque paging
// cursors, and the bucketing of Cassandra partitions.
//
// Contract: a Record is self-contained (the pipeline needs no lookup to turn
// it into stored rows and an Event), and Decode accepts only records that
// Validate; anything else goes to the dead-letter topic.
package model
