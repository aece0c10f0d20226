package ro.punte.sdk;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * Reads an institution's delivery topic, {@code punte.delivery.<institution>}, in consumer
 * group {@code <institution>.<name>} (the groups an institution's principal may use), and
 * verifies every record with the network's keys before anything of it is used. Offsets are
 * committed by {@link #commit()}, after the application has acted on what it read.
 */
public final class DeliveryReader implements AutoCloseable {
    private final KafkaConsumer<byte[], byte[]> consumer;
    private final VerificationKeys networkKeys;

    /**
     * @param group the group name after the institution's id: {@code <institution>.<group>}
     * @param extra the connection's own settings (security.protocol, sasl.*, ssl.*), and
     *              auto.offset.reset (default: earliest, so nothing sent before the first
     *              start is missed)
     */
    public DeliveryReader(String bootstrap, String institution, String group, VerificationKeys networkKeys,
                          Properties extra) {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, institution + "." + group);
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, institution + "." + group);
        if (extra != null) {
            props.putAll(extra);
        }
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        this.networkKeys = networkKeys;
        this.consumer = new KafkaConsumer<>(props);
        consumer.subscribe(Set.of(topic(institution)));
    }

    /** {@code punte.delivery.<institution>}. */
    public static String topic(String institution) {
        return "punte.delivery." + institution;
    }

    /** The records that arrive within {@code timeout}, each verified or refused. */
    public List<Delivery> poll(Duration timeout) {
        List<Delivery> out = new ArrayList<>();
        for (ConsumerRecord<byte[], byte[]> record : consumer.poll(timeout)) {
            String key = record.key() == null ? null : new String(record.key(), StandardCharsets.UTF_8);
            try {
                Event event = networkKeys.decode(record.headers(), record.value());
                out.add(new Delivery(record.topic(), record.partition(), record.offset(), key, event, null));
            } catch (PunteException refused) {
                out.add(new Delivery(record.topic(), record.partition(), record.offset(), key, null, refused));
            }
        }
        return out;
    }

    /**
     * Waits for the outcome of the message {@code eventId} (its {@code subject_id}), reading
     * and verifying everything that arrives meanwhile; records that do not verify never
     * count. Null if none arrives within {@code timeout}.
     */
    public Outcome awaitOutcome(String eventId, Duration timeout) {
        Instant deadline = Instant.now().plus(timeout);
        while (Instant.now().isBefore(deadline)) {
            for (Delivery delivery : poll(Duration.ofMillis(500))) {
                Outcome outcome = delivery.outcome();
                if (outcome != null && eventId.equals(outcome.subjectId())) {
                    return outcome;
                }
            }
        }
        return null;
    }

    /** Commits what {@link #poll} returned so far. */
    public void commit() {
        consumer.commitSync();
    }

    @Override
    public void close() {
        consumer.close(CloseOptions.timeout(Duration.ofSeconds(10)));
    }
}
