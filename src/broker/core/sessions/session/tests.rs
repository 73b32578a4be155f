//! Tests of `session.rs`, kept apart so that the module stays short.
use super::*;
use bytes::Bytes;

fn limits() -> SessionLimits {
    SessionLimits {
        max_queued_messages: 3,
        queue_qos0: false,
        receive_maximum: 2,
        congested_overshoot: 8,
    }
}

fn message(n: u8) -> MessageRef {
    let publish = Publish {
        topic: MqttString::from("t"),
        payload: Bytes::from(vec![n]),
        qos: QoS::ExactlyOnce,
        ..Publish::default()
    };
    Message::new_ref(publish, Instant::now())
}

#[test]
fn message_expiry_counts_down_in_whole_seconds() {
    let t0 = Instant::now();
    let mut publish = Publish::default();
    assert_eq!(
        Message::new_ref(publish.clone(), t0).expiry_left_secs(t0),
        None
    );
    publish.properties.message_expiry_interval = Some(3);
    let m = Message::new_ref(publish, t0);
    assert_eq!(m.expiry_left_secs(t0), Some(3));
    assert_eq!(
        m.expiry_left_secs(t0 + Duration::from_millis(1500)),
        Some(2)
    );
    assert_eq!(m.expiry_left_secs(t0 + Duration::from_secs(3)), Some(0));
}

#[test]
fn window_then_queue_then_drop() {
    let mut s = Session::new(SessionState::default(), 2, limits());
    let m = message(1);
    assert_eq!(
        s.deliver(
            &m,
            QoS::AtLeastOnce,
            false,
            Presence::Online,
            QueueRoom::Available
        ),
        Decision::Send { packet_id: 1 }
    );
    assert_eq!(
        s.deliver(
            &m,
            QoS::ExactlyOnce,
            false,
            Presence::Online,
            QueueRoom::Available
        ),
        Decision::Send { packet_id: 2 }
    );
    for _ in 0..3 {
        assert_eq!(
            s.deliver(
                &m,
                QoS::AtLeastOnce,
                false,
                Presence::Online,
                QueueRoom::Available
            ),
            Decision::Queued
        );
    }
    assert_eq!(
        s.deliver(
            &m,
            QoS::AtLeastOnce,
            false,
            Presence::Online,
            QueueRoom::Available
        ),
        Decision::DroppedQueueFull
    );
    assert_eq!(s.state.dropped_messages, 1);
    assert!(s.poll_queued(u32::MAX).is_none(), "window is full");
    assert!(s.handle_puback(1));
    assert!(!s.handle_puback(1), "already acknowledged");
    let (id, _) = s.poll_queued(u32::MAX).unwrap();
    assert_eq!(id, 3);
    assert!(s.poll_queued(u32::MAX).is_none());
    // QoS 2 flow: PUBREC then PUBCOMP.
    assert!(!s.handle_pubcomp(2), "PUBCOMP before PUBREC");
    assert!(s.handle_pubrec(2, true));
    assert!(s.handle_pubcomp(2));
    assert_eq!(s.poll_queued(u32::MAX).unwrap().0, 4);
}

#[test]
fn congestion_has_hysteresis_stalls_and_ignores_offline_sessions() {
    let limits = SessionLimits {
        max_queued_messages: 8,
        ..limits()
    };
    let mut s = Session::new(SessionState::default(), 1, limits);
    let m = message(1);
    assert_eq!(
        s.deliver(
            &m,
            QoS::AtLeastOnce,
            false,
            Presence::Online,
            QueueRoom::Available
        ),
        Decision::Send { packet_id: 1 }
    );
    for _ in 0..3 {
        s.deliver(
            &m,
            QoS::AtLeastOnce,
            false,
            Presence::Online,
            QueueRoom::Available,
        );
        assert_eq!(
            s.update_congestion(true, OutgoingFill::Low),
            None,
            "below the high watermark"
        );
    }
    s.deliver(
        &m,
        QoS::AtLeastOnce,
        false,
        Presence::Online,
        QueueRoom::Available,
    );
    assert_eq!(
        s.update_congestion(true, OutgoingFill::Low),
        Some(Congestion::Clear)
    );
    assert_eq!(s.congestion, Congestion::Congested);
    // Congested: what was already in flight is kept, up to the overshoot (8) more.
    for _ in 4..16 {
        assert_eq!(
            s.deliver(
                &m,
                QoS::AtLeastOnce,
                false,
                Presence::Online,
                QueueRoom::Available
            ),
            Decision::Queued
        );
    }
    assert_eq!(
        s.deliver(
            &m,
            QoS::AtLeastOnce,
            false,
            Presence::Online,
            QueueRoom::Available
        ),
        Decision::DroppedQueueFull
    );
    // Drains to 3: still above the low watermark (2).
    s.state.queued.truncate(3);
    assert_eq!(s.update_congestion(true, OutgoingFill::Low), None);
    assert!(!s.stall(s.congestion_episode + 1), "a stale timer");
    assert!(s.stall(s.congestion_episode));
    assert_eq!(s.congestion, Congestion::Stalled);
    s.state.queued.truncate(2);
    assert_eq!(
        s.update_congestion(true, OutgoingFill::Low),
        Some(Congestion::Stalled)
    );
    assert_eq!(s.congestion, Congestion::Clear);
    // Offline: queues to the limit, never congested.
    for _ in 0..6 {
        s.deliver(
            &m,
            QoS::AtLeastOnce,
            false,
            Presence::Offline,
            QueueRoom::Available,
        );
    }
    assert_eq!(s.update_congestion(false, OutgoingFill::Low), None);
    assert_eq!(
        s.deliver(
            &m,
            QoS::AtLeastOnce,
            false,
            Presence::Offline,
            QueueRoom::Available
        ),
        Decision::DroppedQueueFull
    );
    // Going offline ends congestion.
    s.state.queued.truncate(4);
    assert_eq!(
        s.update_congestion(true, OutgoingFill::Low),
        Some(Congestion::Clear)
    );
    assert_eq!(
        s.update_congestion(false, OutgoingFill::Low),
        Some(Congestion::Congested)
    );
}

#[test]
fn a_full_outgoing_buffer_congests_until_written_down_to_low() {
    let mut s = Session::new(SessionState::default(), 2, limits());
    assert_eq!(s.update_congestion(true, OutgoingFill::Middle), None);
    assert_eq!(
        s.update_congestion(false, OutgoingFill::High),
        None,
        "offline"
    );
    let episode = s.congestion_episode;
    assert_eq!(
        s.update_congestion(true, OutgoingFill::High),
        Some(Congestion::Clear)
    );
    assert_eq!(s.congestion, Congestion::Congested);
    assert_eq!(s.congestion_episode, episode + 1);
    assert_eq!(s.update_congestion(true, OutgoingFill::Middle), None);
    assert!(s.stall(s.congestion_episode));
    // Stalled: stays so until written down to the low watermark.
    assert_eq!(s.update_congestion(true, OutgoingFill::High), None);
    assert_eq!(
        s.update_congestion(true, OutgoingFill::Low),
        Some(Congestion::Stalled)
    );
    // Both must be low to clear: a queue over its low watermark keeps it congested.
    s.update_congestion(true, OutgoingFill::High);
    let m = message(1);
    for _ in 0..4 {
        s.state.queued.push_back(Queued {
            message: m.clone(),
            qos: QoS::AtLeastOnce,
            retain: false,
        });
    }
    assert_eq!(s.update_congestion(true, OutgoingFill::Low), None);
    assert_eq!(s.congestion, Congestion::Congested);
}

#[test]
fn without_memory_room_nothing_new_is_queued() {
    let mut s = Session::new(SessionState::default(), 1, limits());
    let m = message(1);
    assert_eq!(
        s.deliver(
            &m,
            QoS::AtLeastOnce,
            false,
            Presence::Online,
            QueueRoom::Exhausted
        ),
        Decision::Send { packet_id: 1 },
        "sending now needs no queue room"
    );
    assert_eq!(
        s.deliver(
            &m,
            QoS::AtLeastOnce,
            false,
            Presence::Online,
            QueueRoom::Exhausted
        ),
        Decision::DroppedMemoryLimit
    );
    assert_eq!(
        s.deliver(
            &m,
            QoS::AtMostOnce,
            false,
            Presence::Online,
            QueueRoom::Exhausted
        ),
        Decision::SendQoS0
    );
    assert_eq!(
        s.deliver(
            &m,
            QoS::AtLeastOnce,
            false,
            Presence::Online,
            QueueRoom::Available
        ),
        Decision::Queued
    );
    assert_eq!(s.state.dropped_messages, 1);
    assert_eq!(s.state.queued_bytes(), queued_bytes(&m));
    // Topic, payload, the empty property list's length byte (issue 11), overhead.
    assert_eq!(queued_bytes(&m), 1 + 1 + 1 + QUEUED_OVERHEAD_BYTES);
}

#[test]
fn qos0_offline_is_discarded_unless_configured() {
    let mut s = Session::new(SessionState::default(), 2, limits());
    let m = message(1);
    assert_eq!(
        s.deliver(
            &m,
            QoS::AtMostOnce,
            false,
            Presence::Offline,
            QueueRoom::Available
        ),
        Decision::Discarded
    );
    assert_eq!(
        s.deliver(
            &m,
            QoS::AtMostOnce,
            false,
            Presence::Online,
            QueueRoom::Available
        ),
        Decision::SendQoS0
    );
    s.limits.queue_qos0 = true;
    assert_eq!(
        s.deliver(
            &m,
            QoS::AtMostOnce,
            false,
            Presence::Offline,
            QueueRoom::Available
        ),
        Decision::Queued
    );
    assert_eq!(
        s.deliver(
            &m,
            QoS::AtLeastOnce,
            false,
            Presence::Offline,
            QueueRoom::Available
        ),
        Decision::Queued
    );
    assert_eq!(s.poll_queued(u32::MAX).unwrap().0, 0);
    assert_eq!(s.poll_queued(u32::MAX).unwrap().0, 1);
}

#[test]
fn incoming_qos2_dedup_and_limit() {
    let mut s = Session::new(SessionState::default(), 2, limits());
    assert_eq!(s.handle_incoming_qos2(7), IncomingQoS2::New);
    assert_eq!(s.handle_incoming_qos2(7), IncomingQoS2::Duplicate);
    assert_eq!(s.handle_incoming_qos2(8), IncomingQoS2::New);
    assert_eq!(
        s.handle_incoming_qos2(9),
        IncomingQoS2::ReceiveMaximumExceeded
    );
    assert!(s.handle_pubrel(7));
    assert!(!s.handle_pubrel(7));
    assert_eq!(s.handle_incoming_qos2(7), IncomingQoS2::New);
}

#[test]
fn packet_ids_skip_zero_and_ids_in_flight() {
    let mut s = Session::new(SessionState::default(), 10, limits());
    s.state.last_packet_id = u16::MAX - 1;
    let m = message(1);
    assert_eq!(
        s.deliver(
            &m,
            QoS::AtLeastOnce,
            false,
            Presence::Online,
            QueueRoom::Available
        ),
        Decision::Send {
            packet_id: u16::MAX
        }
    );
    assert_eq!(
        s.deliver(
            &m,
            QoS::AtLeastOnce,
            false,
            Presence::Online,
            QueueRoom::Available
        ),
        Decision::Send { packet_id: 1 }
    );
    s.state.last_packet_id = u16::MAX - 1;
    assert_eq!(
        s.deliver(
            &m,
            QoS::AtLeastOnce,
            false,
            Presence::Online,
            QueueRoom::Available
        ),
        Decision::Send { packet_id: 2 }
    );
}

/// Issue 17: packet ids from a large window, wrapping past 65,535, never one in flight, and
/// acknowledgements in any order find their message.
#[test]
fn large_windows_allocate_distinct_ids_and_ack_in_any_order() {
    let m = message(1);
    let qos1 = |s: &mut Session| match s.deliver(
        &m,
        QoS::AtLeastOnce,
        false,
        Presence::Online,
        QueueRoom::Available,
    ) {
        Decision::Send { packet_id } => packet_id,
        other => panic!("not sent: {other:?}"),
    };
    let mut s = Session::new(SessionState::default(), 1200, limits());
    s.state.last_packet_id = u16::MAX - 100;
    let ids: Vec<u16> = (0..1000).map(|_| qos1(&mut s)).collect();
    // Wrapped past 65,535 to 1, skipping 0.
    assert_eq!(ids[100], 1);
    assert!(!ids.contains(&0));
    // Out of order: every third id, from the newest down.
    for &id in ids.iter().step_by(3).rev() {
        assert!(s.handle_puback(id), "{id}");
        assert!(!s.handle_puback(id), "{id} acknowledged twice");
    }
    assert_eq!(s.state.inflight.len(), 1000 - 334);
    // Ids handed out from inside the window (as after the id space wrapped around it): only
    // the gaps, each once.
    s.state.last_packet_id = ids[0] - 1;
    let refill: Vec<u16> = (0..334 + 200).map(|_| qos1(&mut s)).collect();
    assert_eq!(&refill[..3], &[ids[0], ids[3], ids[6]]);
    let mut in_flight: Vec<u16> = s.state.inflight.iter().map(|o| o.packet_id).collect();
    in_flight.sort_unstable();
    in_flight.dedup();
    assert_eq!(in_flight.len(), 1200);
    assert_eq!(
        s.deliver(
            &m,
            QoS::AtLeastOnce,
            false,
            Presence::Online,
            QueueRoom::Available
        ),
        Decision::Queued
    );
    // Acknowledged in order, then the queued message goes with a fresh id.
    for id in s
        .state
        .inflight
        .iter()
        .map(|o| o.packet_id)
        .collect::<Vec<_>>()
    {
        assert!(s.handle_puback(id));
    }
    assert!(s.state.inflight.is_empty());
    let (id, _) = s.poll_queued(u32::MAX).expect("the queued message goes");
    assert!(s.handle_puback(id));
}

/// A recovered window whose ids do not ascend (persistence, takeover) is still served: by a
/// scan until it empties.
#[test]
fn windows_whose_ids_do_not_ascend_are_scanned() {
    let m = message(1);
    let mut state = SessionState::default();
    for id in [5u16, 3, 9] {
        state.inflight.push_back(Outgoing {
            packet_id: id,
            message: m.clone(),
            qos: QoS::AtLeastOnce,
            retain: false,
            state: OutgoingState::AwaitPubAck,
        });
    }
    state.last_packet_id = 2;
    let mut s = Session::new(state, 10, limits());
    let sent = |s: &mut Session| match s.deliver(
        &m,
        QoS::AtLeastOnce,
        false,
        Presence::Online,
        QueueRoom::Available,
    ) {
        Decision::Send { packet_id } => packet_id,
        other => panic!("not sent: {other:?}"),
    };
    assert_eq!(sent(&mut s), 4);
    assert_eq!(sent(&mut s), 6);
    assert!(s.handle_puback(9));
    assert!(s.handle_puback(3));
    assert!(!s.handle_pubrec(5, true));
    for id in [5, 4, 6] {
        assert!(s.handle_puback(id));
    }
    assert_eq!(sent(&mut s), 7);
}

/// Issue 17's large window stays bounded in bytes: at `max_inflight_bytes` the window takes
/// nothing more (the message queues) until an acknowledgement frees bytes; an empty window
/// always takes one message, however large; resumed windows are counted too.
#[test]
fn the_window_is_bounded_in_bytes() {
    let big = |n: u8| {
        let publish = Publish {
            topic: MqttString::from("t"),
            payload: Bytes::from(vec![n; 1000]),
            qos: QoS::AtLeastOnce,
            ..Publish::default()
        };
        Message::new_ref(publish, Instant::now())
    };
    let per_message = message_bytes(&big(0));
    let limits_2_5 = ByteLimits {
        queued: u32::MAX,
        inflight: per_message * 2 + per_message / 2,
    };
    let mut s = Session::new(SessionState::default(), 100, limits());
    let offer = |s: &mut Session, m: &MessageRef, limits: ByteLimits| {
        s.deliver_paced(
            m,
            QoS::AtLeastOnce,
            false,
            Presence::Online,
            QueueRoom::Available,
            false,
            limits,
        )
    };
    // Three go (the third starts under the limit), the fourth queues.
    for n in 1..=3 {
        assert_eq!(
            offer(&mut s, &big(n), limits_2_5),
            Decision::Send {
                packet_id: u16::from(n)
            }
        );
    }
    assert_eq!(s.inflight_bytes(), per_message * 3);
    assert_eq!(offer(&mut s, &big(4), limits_2_5), Decision::Queued);
    assert!(
        s.poll_queued(limits_2_5.inflight).is_none(),
        "over the bytes"
    );
    assert!(s.handle_puback(1));
    assert_eq!(s.inflight_bytes(), per_message * 2);
    let (id, _) = s
        .poll_queued(limits_2_5.inflight)
        .expect("an ack freed bytes");
    assert_eq!(id, 4);
    // An empty window takes a message larger than the whole limit.
    let tiny = ByteLimits {
        queued: u32::MAX,
        inflight: 1,
    };
    let mut alone = Session::new(SessionState::default(), 100, limits());
    assert_eq!(
        offer(&mut alone, &big(9), tiny),
        Decision::Send { packet_id: 1 }
    );
    assert_eq!(offer(&mut alone, &big(10), tiny), Decision::Queued);
    // A resumed window counts its bytes from the start.
    let resumed = Session::new(s.state.clone(), 100, limits());
    assert_eq!(resumed.inflight_bytes(), s.inflight_bytes());
    assert!(!resumed.can_send_now(limits_2_5.inflight));
}

/// Issue 11 (resend paced by bytes): a resumed window is resent in order, one entry at a time;
/// acknowledgements meanwhile (before, at and after the resend position) neither skip nor
/// repeat an entry; nothing queued is sent until the whole window has been resent.
#[test]
fn a_resumed_window_is_resent_in_order_around_acknowledgements() {
    let mut s = Session::new(SessionState::default(), 5, limits());
    let offer = |s: &mut Session, n: u8| {
        s.deliver(
            &message(n),
            QoS::AtLeastOnce,
            false,
            Presence::Online,
            QueueRoom::Available,
        )
    };
    for n in 1..=5 {
        assert_eq!(
            offer(&mut s, n),
            Decision::Send {
                packet_id: u16::from(n)
            }
        );
    }
    assert_eq!(offer(&mut s, 6), Decision::Queued, "the window is full");
    assert!(s.next_resend().is_none(), "no resend before a resume");
    s.start_resend();
    assert!(s.resend_pending());
    assert_eq!(s.next_resend().map(|o| o.packet_id), Some(1));
    assert_eq!(s.next_resend().map(|o| o.packet_id), Some(2));
    // Acknowledged behind the resend position (1) and ahead of it (4): the window has room.
    assert!(s.handle_puback(1));
    assert!(s.handle_puback(4));
    assert!(
        s.poll_queued(u32::MAX).is_none(),
        "the window is resent first"
    );
    assert!(!s.can_send_now(u32::MAX));
    assert_eq!(s.next_resend().map(|o| o.packet_id), Some(3));
    assert_eq!(s.next_resend().map(|o| o.packet_id), Some(5));
    assert!(!s.resend_pending(), "done after the last entry");
    assert!(s.next_resend().is_none());
    let (packet_id, queued) = s.poll_queued(u32::MAX).expect("the queue goes on");
    assert_eq!((packet_id, queued.message.payload[0]), (6, 6));
    // Window 2, 3, 5, 6: acknowledged at the resend position (5), the next one follows.
    s.start_resend();
    assert_eq!(s.next_resend().map(|o| o.packet_id), Some(2));
    assert_eq!(s.next_resend().map(|o| o.packet_id), Some(3));
    assert!(s.handle_puback(5));
    assert_eq!(s.next_resend().map(|o| o.packet_id), Some(6));
    assert!(!s.resend_pending());
    // Window 2, 3, 6: the last entry acknowledged while next to resend ends the resend.
    s.start_resend();
    assert_eq!(s.next_resend().map(|o| o.packet_id), Some(2));
    assert_eq!(s.next_resend().map(|o| o.packet_id), Some(3));
    assert!(s.handle_puback(6));
    assert!(!s.resend_pending());
    // An empty window has nothing to resend.
    assert!(s.handle_puback(2) && s.handle_puback(3));
    s.start_resend();
    assert!(!s.resend_pending());
}
