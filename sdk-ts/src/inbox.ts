/**
 * Splitting what arrives in an inbox into messages: a delivery alone, or a bundle's
 * members, each handled as if it had come alone; then one ack for the delivery. A bundle
 * that cannot be split, or whose every member is bad, is rejected without requeue (the
 * inbox's dead-letter exchange takes it to its DLQ); a bad member among good ones is
 * logged and dropped, since an agent's own user may not dead-letter one member alone.
 */
import type * as amqp from "amqplib";
import { BUNDLE_CONTENT_TYPE, decodeBundle } from "./bundle";
import { describeError, type Logger } from "./log";
import { type Envelope, parseEnvelope } from "./protocol";

export interface Incoming {
  envelope: Envelope;
  userId: string | undefined;
  messageId: string | undefined;
}

/** Handles one message; false if it is bad (not a message this side can take). */
export type Dispatch = (incoming: Incoming) => Promise<boolean> | boolean;

export async function handleDelivery(msg: amqp.ConsumeMessage, channel: amqp.Channel, dispatch: Dispatch, log: Logger): Promise<void> {
  const userId = msg.properties.userId as string | undefined;
  const settle = (ok: boolean): void => {
    try {
      if (ok) channel.ack(msg);
      else channel.nack(msg, false, false);
    } catch {
      // the channel closed under us: the broker redelivers it on the next connection
    }
  };
  if (msg.properties.contentType === BUNDLE_CONTENT_TYPE) {
    let members;
    try {
      members = decodeBundle(msg.content);
    } catch (err) {
      log("warning", "sdk.bundle_rejected", { message_id: msg.properties.messageId, error: describeError(err) });
      settle(false);
      return;
    }
    let good = 0;
    for (const member of members) {
      if (await one(member.body, member.messageId, userId, dispatch, log)) good++;
    }
    settle(good > 0);
    return;
  }
  settle(await one(msg.content, msg.properties.messageId as string | undefined, userId, dispatch, log));
}

async function one(body: Buffer, messageId: string | undefined, userId: string | undefined, dispatch: Dispatch, log: Logger): Promise<boolean> {
  let envelope: Envelope;
  try {
    envelope = parseEnvelope(body);
  } catch (err) {
    log("warning", "sdk.bad_message", { message_id: messageId, error: describeError(err) });
    return false;
  }
  try {
    return await dispatch({ envelope, userId, messageId });
  } catch (err) {
    log("error", "sdk.handler_error", { msg_type: envelope.type, message_id: messageId, error: describeError(err) });
    return false;
  }
}
