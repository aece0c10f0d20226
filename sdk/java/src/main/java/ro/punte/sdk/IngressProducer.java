package ro.punte.sdk;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Sends an institution's signed events to its ingress topic, {@code punte.ingress.<institution>}:
 * binary content mode (attributes as headers, the body as the value), key = ce_id (or the case
 * id given), acks=all and the idempotent producer. {@code extra} adds the connection's own
 * settings (security.protocol, sasl.*, ssl.*); the embedded Tansu broker refuses idempotence,
 * so pass {@code enable.idempotence=false} there.
 */
public final class IngressProducer implements AutoCloseable {
    private final String topic;
    private final KafkaProducer<byte[], byte[]> producer;

    public IngressProducer(String bootstrap, String institution, Properties extra) {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        props.put(ProducerConfig.CLIENT_ID_CONFIG, institution + ".punte-sdk");
        if (extra != null) {
            props.putAll(extra);
        }
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        this.topic = topic(institution);
        this.producer = new KafkaProducer<>(props);
    }

    public IngressProducer(String bootstrap, String institution) {
        this(bootstrap, institution, null);
    }

    /** {@code punte.ingress.<institution>}. */
    public static String topic(String institution) {
        return "punte.ingress." + institution;
    }

    /** The record the SDK sends for a signed event, keyed by {@code key}. */
    public ProducerRecord<byte[], byte[]> record(Event event, String key) {
        if (event.signature() == null) {
            throw new IllegalArgumentException("sign the event first (InstitutionKey.sign)");
        }
        List<org.apache.kafka.common.header.Header> headers = new ArrayList<>();
        for (Header h : event.headers()) {
            headers.add(new RecordHeader(h.name(), h.valueBytes()));
        }
        return new ProducerRecord<>(topic, null, key.getBytes(java.nio.charset.StandardCharsets.UTF_8), event.body(),
                headers);
    }

    /** Sends without waiting; the future completes once every in-sync replica has the record. */
    public Future<RecordMetadata> sendAsync(Event event, String key) {
        return producer.send(record(event, key));
    }

    /** Sends, keyed by ce_id (a new report), and waits for the broker's acknowledgement. */
    public RecordMetadata send(Event event) throws InterruptedException, ExecutionException {
        return send(event, event.id());
    }

    /** Sends keyed by {@code key} (the case id where a case exists) and waits for the acknowledgement. */
    public RecordMetadata send(Event event, String key) throws InterruptedException, ExecutionException {
        return sendAsync(event, key).get();
    }

    public void flush() {
        producer.flush();
    }

    @Override
    public void close() {
        producer.close(Duration.ofSeconds(10));
    }
}
