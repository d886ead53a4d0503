// Package schemas holds esignflow's Avro schemas, their Go types, the topic
// names they are registered under, and the Codec that reads and writes them
// in the Confluent wire format through a Schema Registry.
//
// The .avsc files are the contract with every other Kafka client: a Java,
// librdkafka or KafkaJS producer that registers nothing and resolves schemas
// from the registry reads and writes exactly what esignflow does.
package schemas

import (
	"embed"
	"fmt"
	"reflect"

	"github.com/hamba/avro/v2"
)

// Topic names. Each topic carries one record type, registered under the
// subject "<topic>-value" (the topic-name strategy).
const (
	TopicRequests  = "esignflow.requests.v1"
	TopicEvents    = "esignflow.events.v1"
	TopicStatus    = "esignflow.status.v1"
	TopicFinalized = "esignflow.finalized.v1"
	TopicDLQ       = "esignflow.dlq.v1"
)

// Topics lists every topic esignflow uses, in data-flow order.
func Topics() []string {
	return []string{TopicRequests, TopicEvents, TopicStatus, TopicFinalized, TopicDLQ}
}

// Subject returns the Schema Registry subject of a topic's values.
func Subject(topic string) string { return topic + "-value" }

//go:embed *.avsc
var files embed.FS

// binding ties a topic to its schema file and Go type.
type binding struct {
	topic string
	file  string
	typ   reflect.Type
}

func bindings() []binding {
	return []binding{
		{TopicRequests, "SigningRequest.avsc", reflect.TypeFor[SigningRequest]()},
		{TopicEvents, "EnvelopeEvent.avsc", reflect.TypeFor[EnvelopeEvent]()},
		{TopicStatus, "EnvelopeStatusChanged.avsc", reflect.TypeFor[EnvelopeStatusChanged]()},
		{TopicFinalized, "EnvelopeFinalized.avsc", reflect.TypeFor[EnvelopeFinalized]()},
		{TopicDLQ, "DeadLetter.avsc", reflect.TypeFor[DeadLetter]()},
	}
}

// Text returns the schema text registered for topic.
func Text(topic string) (string, error) {
	for _, b := range bindings() {
		if b.topic == topic {
			raw, err := files.ReadFile(b.file)
			if err != nil {
				return "", fmt.Errorf("read %s: %w", b.file, err)
			}
			return string(raw), nil
		}
	}
	return "", fmt.Errorf("topic %q: %w", topic, ErrUnknownTopic)
}

// Parse parses the schema of topic into its own schema cache, so that the
// named types each file repeats (Status, Source, …) never collide.
func Parse(topic string) (avro.Schema, error) {
	text, err := Text(topic)
	if err != nil {
		return nil, err
	}
	s, err := avro.ParseWithCache(text, "", &avro.SchemaCache{})
	if err != nil {
		return nil, fmt.Errorf("parse schema of %s: %w", topic, err)
	}
	return s, nil
}
