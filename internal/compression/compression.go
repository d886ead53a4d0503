// Package compression names the record-batch compressions esignflow's
// producers can use. franz-go compresses with snappy unless told
// otherwise, and some mainstream clients cannot read snappy without a
// plugin (KafkaJS throws KafkaJSNotImplemented on the first batch), so
// esignflow chooses its own default: no compression, which every client
// reads, as Apache Kafka's own producer does by default.
package compression

import (
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Default is the compression esignflow's producers use unless configured
// otherwise.
const Default = "none"

// Names lists the accepted names, for flag help and errors.
const Names = "none|gzip|snappy|lz4|zstd"

// Codec returns the franz-go codec named name (case-insensitive).
func Codec(name string) (kgo.CompressionCodec, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "none", "":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("compression %q is not one of %s", name, Names)
}

// Opt returns the producer option for the compression named name.
func Opt(name string) (kgo.Opt, error) {
	c, err := Codec(name)
	if err != nil {
		return nil, err
	}
	return kgo.ProducerBatchCompression(c), nil
}

// DefaultOpt is the producer option for Default. Components put it
// before the caller's options, so that a configured compression wins.
func DefaultOpt() kgo.Opt { return kgo.ProducerBatchCompression(kgo.NoCompression()) }
