package interop;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * A foreign esignflow client built only on Apache Kafka's client and Apache
 * Avro: it sends one SigningRequest in the Confluent wire format and follows
 * the envelope it makes on the status topic until a terminal status, checking
 * that versions run 1, 2, 3… without a repeat or a gap.
 */
public final class Client {
    static final String REQUESTS = "esignflow.requests.v1";
    static final String STATUS = "esignflow.status.v1";
    static final Set<String> TERMINAL = Set.of("COMPLETED", "DECLINED", "VOIDED", "EXPIRED", "FAILED");
    static final String NAME = "java";

    /** A broken contract or a timeout: the message is the reason. */
    static final class Violation extends Exception {
        final int code;

        Violation(int code, String msg) {
            super(msg);
            this.code = code;
        }
    }

    final String brokers;
    final String registry;
    final Duration timeout;
    final Duration linger;
    final boolean verbose;
    final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    final ObjectMapper json = new ObjectMapper();
    final Map<Integer, Schema> schemas = new ConcurrentHashMap<>();

    Client(String brokers, String registry, Duration timeout, Duration linger, boolean verbose) {
        this.brokers = brokers;
        this.registry = registry.replaceAll("/+$", "");
        this.timeout = timeout;
        this.linger = linger;
        this.verbose = verbose;
    }

    public static void main(String[] args) {
        String brokers = "127.0.0.1:9092", registry = "http://127.0.0.1:8081";
        double timeout = 120, linger = 2;
        boolean verbose = false;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            try {
                switch (a) {
                    case "--brokers" -> brokers = args[++i];
                    case "--registry" -> registry = args[++i];
                    case "--timeout" -> timeout = Double.parseDouble(args[++i]);
                    case "--linger" -> linger = Double.parseDouble(args[++i]);
                    case "-v", "--verbose" -> verbose = true;
                    default -> {
                        System.out.println(NAME + ": FAIL: unknown argument " + a);
                        System.exit(64);
                    }
                }
            } catch (ArrayIndexOutOfBoundsException | NumberFormatException e) {
                System.out.println(NAME + ": FAIL: bad value for " + a);
                System.exit(64);
            }
        }
        Client c = new Client(brokers, registry, Duration.ofMillis((long) (timeout * 1000)),
                Duration.ofMillis((long) (linger * 1000)), verbose);
        try {
            System.out.println(c.run());
            System.exit(0);
        } catch (Violation v) {
            System.out.println(NAME + ": FAIL: " + v.getMessage());
            System.exit(v.code);
        } catch (Exception e) {
            System.out.println(NAME + ": FAIL: " + e);
            if (verbose) {
                e.printStackTrace();
            }
            System.exit(1);
        }
    }

    void log(String msg) {
        if (verbose) {
            System.err.println(NAME + ": " + msg);
        }
    }

    String run() throws Exception {
        long deadline = System.nanoTime() + timeout.toNanos();
        byte[] rnd = new byte[4];
        new SecureRandom().nextBytes(rnd);
        String requestId = "interop-" + NAME + "-" + hex(rnd);

        // The writer schema is whatever the registry holds as latest: esignflow registers it.
        JsonNode latest = getJson("/subjects/" + REQUESTS + "-value/versions/latest");
        int writerId = latest.get("id").asInt();
        Schema writer = new Schema.Parser().parse(latest.get("schema").asText());
        schemas.put(writerId, writer);
        byte[] value = encode(writerId, writer, request(writer, requestId));
        log("request " + requestId + " encoded with schema id " + writerId + " (" + value.length + " bytes)");

        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        pp.put(ProducerConfig.ACKS_CONFIG, "all");
        pp.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        pp.put(ProducerConfig.CLIENT_ID_CONFIG, "interop-java");
        pp.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
        pp.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        try (KafkaProducer<String, byte[]> producer = new KafkaProducer<>(pp, new StringSerializer(), new ByteArraySerializer())) {
            RecordMetadata md = producer.send(new ProducerRecord<>(REQUESTS, requestId, value)).get();
            log("produced to " + md.topic() + "/" + md.partition() + "@" + md.offset());
        }

        Properties cp = new Properties();
        cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        cp.put(ConsumerConfig.GROUP_ID_CONFIG, "interop-java-" + UUID.randomUUID());
        cp.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        cp.put(ConsumerConfig.CLIENT_ID_CONFIG, "interop-java");
        Map<String, Long> versions = new LinkedHashMap<>();
        Map<String, String> statuses = new HashMap<>();
        List<String> path = new ArrayList<>();
        Set<String> headerKeys = new TreeSet<>();
        String terminalEnv = null, terminalStatus = null;
        long terminalVersion = 0, lingerUntil = 0;
        List<String> later = new ArrayList<>();
        try (KafkaConsumer<String, byte[]> consumer = new KafkaConsumer<>(cp, new StringDeserializer(), new ByteArrayDeserializer())) {
            consumer.subscribe(List.of(STATUS));
            while (true) {
                long now = System.nanoTime();
                if (terminalEnv != null && now >= lingerUntil) {
                    break;
                }
                if (terminalEnv == null && now >= deadline) {
                    throw new Violation(2, "timeout after " + timeout.toSeconds() + "s waiting for request " + requestId
                            + " to reach a terminal status; seen " + (versions.isEmpty() ? "no status change" : String.join(" ", path)));
                }
                ConsumerRecords<String, byte[]> recs = consumer.poll(Duration.ofMillis(250));
                for (ConsumerRecord<String, byte[]> r : recs) {
                    String where = r.topic() + "/" + r.partition() + "@" + r.offset();
                    GenericRecord sc = decode(r.value(), where);
                    GenericRecord state = (GenericRecord) sc.get("state");
                    Object rid = state.get("request_id");
                    if (rid == null || !requestId.equals(rid.toString())) {
                        continue;
                    }
                    for (Header h : r.headers()) {
                        headerKeys.add(h.key());
                    }
                    String env = sc.get("envelope_id").toString();
                    long version = (Long) sc.get("version");
                    String status = sc.get("status").toString();
                    Object prev = sc.get("previous_status");
                    log(where + " key=" + r.key() + " " + env + " v" + version + " " + prev + " -> " + status);
                    if (r.key() == null || !r.key().equals(env)) {
                        throw new Violation(1, where + ": key " + r.key() + " is not the envelope id " + env);
                    }
                    if (!env.equals(state.get("envelope_id").toString())) {
                        throw new Violation(1, where + ": state.envelope_id " + state.get("envelope_id") + " differs from envelope_id " + env);
                    }
                    if ((Long) state.get("version") != version) {
                        throw new Violation(1, where + ": state.version " + state.get("version") + " differs from version " + version);
                    }
                    if (!versions.isEmpty() && !versions.containsKey(env)) {
                        throw new Violation(1, "request " + requestId + " has a second envelope " + env + " besides " + versions.keySet());
                    }
                    long want = versions.getOrDefault(env, 0L) + 1;
                    if (version < want) {
                        throw new Violation(1, where + ": envelope " + env + " version " + version + " repeated (expected " + want + ")");
                    }
                    if (version > want) {
                        throw new Violation(1, where + ": envelope " + env + " version " + version + " after " + (want - 1) + ": gap");
                    }
                    String wantPrev = statuses.get(env);
                    String gotPrev = prev == null ? null : prev.toString();
                    if (wantPrev == null ? gotPrev != null : !wantPrev.equals(gotPrev)) {
                        throw new Violation(1, where + ": envelope " + env + " version " + version + " previous_status "
                                + gotPrev + ", but version " + (version - 1) + " was " + wantPrev);
                    }
                    versions.put(env, version);
                    statuses.put(env, status);
                    path.add(status);
                    if (terminalEnv != null) {
                        later.add("v" + version + " " + status);
                    } else if (TERMINAL.contains(status)) {
                        terminalEnv = env;
                        terminalStatus = status;
                        terminalVersion = version;
                        lingerUntil = System.nanoTime() + linger.toNanos();
                    }
                }
            }
        }
        log("status path " + String.join(" ", path) + "; record headers " + headerKeys);
        return NAME + ": request " + requestId + " envelope " + terminalEnv + " reached " + terminalStatus + " in "
                + terminalVersion + " versions (" + String.join(" > ", path.subList(0, (int) terminalVersion)) + ")"
                + (later.isEmpty() ? "" : "; then " + String.join(", ", later) + " (in order)");
    }

    /** Every field is set: the registered schema carries no defaults. */
    static GenericRecord request(Schema s, String requestId) {
        Schema docS = s.getField("documents").schema().getElementType();
        Schema recS = s.getField("recipients").schema().getElementType();
        Schema authS = recS.getField("auth").schema();

        GenericRecord doc = new GenericData.Record(docS);
        doc.put("name", "nda.pdf");
        doc.put("content_type", "application/pdf");
        doc.put("uri", "s3://contracts/nda.pdf");
        doc.put("sha256", null);
        doc.put("content", null);

        List<GenericRecord> recipients = new ArrayList<>();
        String[][] people = {{"r1", "Ada Lovelace", "ada@example.com"}, {"r2", "Alan Turing", "alan@example.com"}};
        for (int i = 0; i < people.length; i++) {
            GenericRecord r = new GenericData.Record(recS);
            r.put("id", people[i][0]);
            r.put("name", people[i][1]);
            r.put("email", people[i][2]);
            r.put("role", "signer");
            r.put("routing_order", i + 1);
            r.put("auth", new GenericData.EnumSymbol(authS, "EMAIL"));
            r.put("phone", null);
            recipients.add(r);
        }

        GenericRecord req = new GenericData.Record(s);
        req.put("request_id", requestId);
        req.put("tenant", "interop");
        req.put("provider", "sim");
        req.put("documents", List.of(doc));
        req.put("recipients", recipients);
        req.put("subject", "NDA (interop " + NAME + ")");
        req.put("message", "");
        req.put("expires_at", null);
        req.put("metadata", Map.of("client", "interop-" + NAME));
        req.put("requested_at", System.currentTimeMillis()); // timestamp-millis: a long
        return req;
    }

    static byte[] encode(int id, Schema s, GenericRecord rec) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(0);
        out.write(ByteBuffer.allocate(4).putInt(id).array());
        BinaryEncoder enc = EncoderFactory.get().binaryEncoder(out, null);
        new GenericDatumWriter<GenericRecord>(s).write(rec, enc);
        enc.flush();
        return out.toByteArray();
    }

    GenericRecord decode(byte[] v, String where) throws Exception {
        if (v == null || v.length < 5) {
            throw new Violation(1, where + ": value of " + (v == null ? "null" : v.length + " bytes") + " is too short for the wire format");
        }
        if (v[0] != 0) {
            throw new Violation(1, where + ": magic byte " + v[0] + ", want 0");
        }
        int id = ByteBuffer.wrap(v, 1, 4).getInt();
        Schema s = schema(id);
        BinaryDecoder dec = DecoderFactory.get().binaryDecoder(v, 5, v.length - 5, null);
        GenericRecord rec;
        try {
            rec = new GenericDatumReader<GenericRecord>(s).read(null, dec);
        } catch (Exception e) {
            throw new Violation(1, where + ": decode with schema id " + id + ": " + e);
        }
        if (!dec.isEnd()) {
            throw new Violation(1, where + ": trailing bytes after the Avro body (schema id " + id + ")");
        }
        return rec;
    }

    Schema schema(int id) throws Exception {
        Schema s = schemas.get(id);
        if (s == null) {
            JsonNode n = getJson("/schemas/ids/" + id);
            s = new Schema.Parser().parse(n.get("schema").asText());
            schemas.put(id, s);
            log("fetched schema id " + id + ": " + s.getFullName());
        }
        return s;
    }

    JsonNode getJson(String path) throws Exception {
        HttpRequest req = HttpRequest.newBuilder(URI.create(registry + path))
                .timeout(Duration.ofSeconds(10))
                .header("Accept", "application/vnd.schemaregistry.v1+json, application/json")
                .GET().build();
        HttpResponse<String> resp = http.send(req, HttpResponse.BodyHandlers.ofString());
        if (resp.statusCode() != 200) {
            throw new Violation(3, "registry GET " + path + ": HTTP " + resp.statusCode() + ": " + resp.body());
        }
        return json.readTree(resp.body());
    }

    static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder();
        for (byte x : b) {
            sb.append(String.format("%02x", x));
        }
        return sb.toString();
    }
}
