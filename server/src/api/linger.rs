//! Lingering close for gRPC connections.
//!
//! At shutdown the server ends a busy stream with UNAVAILABLE while its client is
//! still sending. If the socket were then closed with those bytes unread, the kernel
//! would answer with a reset, and the client could lose the status it had not read yet
//! (seen as `Unknown: error reading a body from connection`). So the close sends FIN
//! first, then reads and discards until the client closes too, for at most
//! [`LINGER`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Long enough for a client on a slow link to read its last frames and close.
pub(crate) const LINGER: Duration = Duration::from_secs(2);

pub(crate) struct LingeringClose {
    stream: TcpStream,
    close: Close,
}

enum Close {
    Open,
    Draining(Pin<Box<Sleep>>),
    Closed,
}

impl LingeringClose {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            close: Close::Open,
        }
    }
}

impl Connected for LingeringClose {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for LingeringClose {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LingeringClose {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.close {
                Close::Open => {
                    ready!(Pin::new(&mut this.stream).poll_shutdown(cx))?;
                    this.close = Close::Draining(Box::pin(tokio::time::sleep(LINGER)));
                }
                Close::Draining(deadline) => {
                    if deadline.as_mut().poll(cx).is_ready() {
                        this.close = Close::Closed;
                        continue;
                    }
                    let mut scratch = [0u8; 4096];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match ready!(Pin::new(&mut this.stream).poll_read(cx, &mut buf)) {
                        // More of what the client was sending: discard it, read on.
                        Ok(()) if !buf.filled().is_empty() => {}
                        // The client closed (or reset): nothing is left to lose.
                        _ => this.close = Close::Closed,
                    }
                }
                Close::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// The server closes while bytes the client sent are still unread. The client
    /// must read all the server wrote, then a clean EOF, and may still write (no
    /// reset) until it closes its side.
    #[tokio::test]
    async fn closing_with_unread_input_sends_fin_not_reset() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut conn = LingeringClose::new(stream);
            let mut first = [0u8; 5];
            conn.read_exact(&mut first).await.unwrap();
            conn.write_all(b"last answer").await.unwrap();
            conn.shutdown().await.unwrap();
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"hello").await.unwrap();
        // Bytes the server never reads as requests.
        client.write_all(&[7u8; 64 * 1024]).await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"last answer");
        // Give a plain close the time to reset the connection, then check it did not.
        tokio::time::sleep(Duration::from_millis(200)).await;
        client
            .write_all(b"still sending")
            .await
            .expect("the server reset the connection instead of lingering");
        drop(client);
        tokio::time::timeout(LINGER * 2, server)
            .await
            .expect("the server lingered after the client closed")
            .unwrap();
    }
}
