//! A sender whose yamux sends data frames as large as the window it is granted, as js-libp2p's
//! yamux does (go-yamux and rust-yamux split at 64 and 16 KiB): the peer that
//! `transport::muxer`'s window settings are for.

use std::net::SocketAddr;

use futures::AsyncWriteExt as _;
use libp2p::PeerId;

use crate::frame;

/// Connects to `target` (TCP), opens the handshake stream and writes each of `messages` as one
/// v1 frame, through a yamux that sends frames up to 16 MiB. Returns its `PeerId` and a task
/// that drives its connection until the node ends it (with the error that ended it).
pub async fn send_in_window_sized_frames(
    target: SocketAddr,
    messages: &[Vec<u8>],
) -> Result<(PeerId, tokio::task::JoinHandle<String>), Box<dyn std::error::Error>> {
    let tcp = tokio::net::TcpStream::connect(target).await?;
    let (key, io) = crate::attack::noise_then_yamux(tcp).await?;
    let v = multistream_select::Version::V1;
    let mut config = yamux::Config::default();
    config.set_split_send_size(16 * 1024 * 1024);
    let mut connection = yamux::Connection::new(io, config, yamux::Mode::Client);
    let stream = futures::future::poll_fn(|cx| connection.poll_new_outbound(cx)).await?;
    let driver = tokio::spawn(async move {
        loop {
            match futures::future::poll_fn(|cx| connection.poll_next_inbound(cx)).await {
                Some(Ok(s)) => drop(s),
                Some(Err(e)) => return e.to_string(),
                None => return "closed".to_owned(),
            }
        }
    });
    let (_, mut stream) =
        multistream_select::dialer_select_proto(stream, ["/glueberry/stream/handshake/1.0.0"], v)
            .await?;
    for m in messages {
        stream.write_all(&frame(m)).await?;
    }
    stream.flush().await?;
    Ok((key.public().to_peer_id(), driver))
}
