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
	TopicRequests = "esignflow.requests.v1"
	TopicEvents   = "esignflow.events.v1"
	TopicStatus   = "esignflow.status.v1"
	// TopicEnvelopes is the compacted changelog of envelope states,
	// partitioned as the events topic (DESIGN.md, processing protocol).
	TopicEnvelopes = "esignflow.envelopes.v1"
	TopicFinalized = "esignflow.finalized.v1"
	TopicDLQ       = "esignflow.dlq.v1"
)

// Topics lists every topic esignflow uses, in data-flow order.
func Topics() []string {
	return []string{TopicRequests, TopicEvents, TopicStatus, TopicEnvelopes, TopicFinalized, TopicDLQ}
}

// Names are the topic names one installation of esignflow uses: the
// Topic constants, or each behind a prefix. A prefix lets several
// installations share a cluster, and lets tests that share one real broker
// keep out of each other's way. The topic-name strategy follows the names,
// so a prefixed installation's subjects are prefixed too.
type Names struct {
	Requests, Events, Status, Envelopes, Finalized, DLQ string
}

// DefaultNames are the Topic constants.
func DefaultNames() Names { return Prefixed("") }

// Prefixed puts prefix before every default name.
func Prefixed(prefix string) Names {
	return Names{
		Requests: prefix + TopicRequests, Events: prefix + TopicEvents, Status: prefix + TopicStatus,
		Envelopes: prefix + TopicEnvelopes, Finalized: prefix + TopicFinalized, DLQ: prefix + TopicDLQ,
	}
}

// All lists the names in data-flow order.
func (n Names) All() []string {
	return []string{n.Requests, n.Events, n.Status, n.Envelopes, n.Finalized, n.DLQ}
}

// Of returns the name of the topic whose default name is topic (one of the
// Topic constants), or topic itself when it is not one.
func (n Names) Of(topic string) string {
	switch topic {
	case TopicRequests:
		return n.Requests
	case TopicEvents:
		return n.Events
	case TopicStatus:
		return n.Status
	case TopicEnvelopes:
		return n.Envelopes
	case TopicFinalized:
		return n.Finalized
	case TopicDLQ:
		return n.DLQ
	}
	return topic
}

// OrDefault is n, or DefaultNames when n is the zero value.
func (n Names) OrDefault() Names {
	if n == (Names{}) {
		return DefaultNames()
	}
	return n
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
		{TopicEnvelopes, "Envelope.avsc", reflect.TypeFor[Envelope]()},
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
