#!/bin/sh
# One node of compose.yaml's Apache Kafka cluster: KRaft, broker and controller, the same
# settings as the test suite's cluster (punte/apache_kafka.py, decision 0027). Clients and
# brokers speak SASL_PLAINTEXT with SCRAM-SHA-512 on the compose network; the controllers'
# own listener takes SASL/PLAIN with the admin's password (controllers cannot read SCRAM
# credentials before the metadata that holds them). The storage is formatted once, with the
# admin's SCRAM credential; the other principals come from `punte kafka apply` (kafka-setup).
set -eu
: "${NODE_ID:?}" "${KAFKA_CLUSTER_ID:?}" "${PUNTE_KAFKA_ADMIN_PASSWORD:?}"
config=/tmp/server.properties  # holds the admin password: never on the volume
scram_jaas="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$PUNTE_KAFKA_ADMIN_PASSWORD\";"
plain_jaas="org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" password=\"$PUNTE_KAFKA_ADMIN_PASSWORD\" user_admin=\"$PUNTE_KAFKA_ADMIN_PASSWORD\";"
umask 077
cat > "$config" <<PROPERTIES
process.roles=broker,controller
node.id=$NODE_ID
controller.quorum.voters=1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093
listeners=CLIENT://:9092,CONTROLLER://:9093
advertised.listeners=CLIENT://kafka-$NODE_ID:9092
listener.security.protocol.map=CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
inter.broker.listener.name=CLIENT
controller.listener.names=CONTROLLER
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.client.scram-sha-512.sasl.jaas.config=$scram_jaas
listener.name.controller.sasl.enabled.mechanisms=PLAIN
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.plain.sasl.jaas.config=$plain_jaas
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin
allow.everyone.if.no.acl.found=false
auto.create.topics.enable=false
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
log.dirs=/var/lib/kafka/data
PROPERTIES
/opt/kafka/bin/kafka-storage.sh format --cluster-id "$KAFKA_CLUSTER_ID" -c "$config" --ignore-formatted \
  --add-scram "SCRAM-SHA-512=[name=admin,password=$PUNTE_KAFKA_ADMIN_PASSWORD]"
exec /opt/kafka/bin/kafka-server-start.sh "$config"
