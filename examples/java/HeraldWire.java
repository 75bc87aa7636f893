// Herald's wire format from the JVM, with Apache Avro's reference implementation only
// (org.apache.avro.message.BinaryMessageEncoder/Decoder: the single-object encoding).
//
//   javac -cp "$AVRO_CP" -d out HeraldWire.java
//   java -cp "out:$AVRO_CP" HeraldWire encode schemas/avro/DomainEvent.v2.avsc \
//        EVENT_ID TYPE OCCURRED_AT_MS USER_ID TENANT|- LOCALE|- PAYLOAD_JSON   -> hex of the record
//   java -cp "out:$AVRO_CP" HeraldWire decode schemas/avro/DomainEvent.v2.avsc HEX -> the record as JSON
//
// The bytes are what a Kafka record's value on herald.events holds; send them with your Kafka
// client, keyed by the user id (see docs/wire-format.md). "-" stands for a null tenant or locale.
import java.io.File;
import java.nio.ByteBuffer;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;

public final class HeraldWire {
  public static void main(String[] args) throws Exception {
    if (args.length < 2) {
      System.err.println("usage: HeraldWire encode|decode SCHEMA.avsc ...");
      System.exit(2);
    }
    Schema schema = new Schema.Parser().parse(new File(args[1]));
    if (args[0].equals("encode") && args.length == 9) {
      GenericRecord event = new GenericData.Record(schema);
      event.put("event_id", args[2]);
      event.put("type", args[3]);
      event.put("occurred_at", Long.parseLong(args[4]));
      event.put("user_id", args[5]);
      event.put("tenant", orNull(args[6]));
      event.put("locale", orNull(args[7]));
      event.put("payload", args[8]);
      ByteBuffer buf = new BinaryMessageEncoder<GenericRecord>(GenericData.get(), schema).encode(event);
      System.out.println(hex(buf));
    } else if (args[0].equals("decode") && args.length == 3) {
      BinaryMessageDecoder<GenericRecord> decoder =
          new BinaryMessageDecoder<GenericRecord>(GenericData.get(), schema);
      System.out.println(decoder.decode(ByteBuffer.wrap(unhex(args[2]))));
    } else {
      System.err.println("usage: HeraldWire encode|decode SCHEMA.avsc ...");
      System.exit(2);
    }
  }

  private static String orNull(String arg) {
    return arg.equals("-") ? null : arg;
  }

  private static String hex(ByteBuffer buf) {
    StringBuilder out = new StringBuilder();
    while (buf.hasRemaining()) {
      out.append(String.format("%02x", buf.get()));
    }
    return out.toString();
  }

  private static byte[] unhex(String hex) {
    byte[] out = new byte[hex.length() / 2];
    for (int i = 0; i < out.length; i++) {
      out[i] = (byte) Integer.parseInt(hex.substring(2 * i, 2 * i + 2), 16);
    }
    return out;
  }
}
