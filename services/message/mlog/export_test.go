package mlog

import "github.com/IBM/sarama"

// SetTopicConfig sets one setting of topic (tests: a topic made unsafe
// the way a human or another operator could).
func (a *Admin) SetTopicConfig(topic, name, value string) error {
	return a.ca.IncrementalAlterConfig(sarama.TopicResource, topic,
		map[string]sarama.IncrementalAlterConfigsEntry{name: {Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &value}}, false)
}
