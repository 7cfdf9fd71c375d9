//! Noise or TLS 1.3, whichever the other side picks: go-libp2p's default host offers TLS before
//! Noise, and a node configured for TLS alone must still reach us (docs/protocol.md, §1).
//!
//! multistream-select negotiates between them; the dialer proposes in the order given here, so
//! this node proposes Noise first (what every Glueberry node speaks) and accepts either. libp2p
//! has this combinator (`SelectSecurityUpgrade`) only inside its `SwarmBuilder`, which builds
//! the transport itself; glueberry builds its own (eviction, kill switches, its yamux), hence
//! this small copy of the same idea.

use std::iter::{Chain, Map};

use either::Either;
use futures::future::{self, MapOk, TryFutureExt as _};
use libp2p::PeerId;
use libp2p::core::either::EitherFuture;
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo};

/// Either of two security upgrades: the protocols of `A` first, then `B`'s.
#[derive(Debug, Clone)]
pub(crate) struct Select<A, B>(pub(crate) A, pub(crate) B);

impl<A: UpgradeInfo, B: UpgradeInfo> UpgradeInfo for Select<A, B> {
    type Info = Either<A::Info, B::Info>;
    type InfoIter = Chain<
        Map<<A::InfoIter as IntoIterator>::IntoIter, fn(A::Info) -> Self::Info>,
        Map<<B::InfoIter as IntoIterator>::IntoIter, fn(B::Info) -> Self::Info>,
    >;

    fn protocol_info(&self) -> Self::InfoIter {
        let a = self.0.protocol_info().into_iter();
        let b = self.1.protocol_info().into_iter();
        a.map(Either::Left as fn(A::Info) -> _)
            .chain(b.map(Either::Right as fn(B::Info) -> _))
    }
}

type Factored<TA, TB> =
    fn(future::Either<(PeerId, TA), (PeerId, TB)>) -> (PeerId, future::Either<TA, TB>);

impl<C, A, B, TA, TB, EA, EB> InboundConnectionUpgrade<C> for Select<A, B>
where
    A: InboundConnectionUpgrade<C, Output = (PeerId, TA), Error = EA>,
    B: InboundConnectionUpgrade<C, Output = (PeerId, TB), Error = EB>,
{
    type Output = (PeerId, future::Either<TA, TB>);
    type Error = Either<EA, EB>;
    type Future = MapOk<EitherFuture<A::Future, B::Future>, Factored<TA, TB>>;

    fn upgrade_inbound(self, sock: C, info: Self::Info) -> Self::Future {
        match info {
            Either::Left(i) => EitherFuture::First(self.0.upgrade_inbound(sock, i)),
            Either::Right(i) => EitherFuture::Second(self.1.upgrade_inbound(sock, i)),
        }
        .map_ok(future::Either::factor_first as Factored<TA, TB>)
    }
}

impl<C, A, B, TA, TB, EA, EB> OutboundConnectionUpgrade<C> for Select<A, B>
where
    A: OutboundConnectionUpgrade<C, Output = (PeerId, TA), Error = EA>,
    B: OutboundConnectionUpgrade<C, Output = (PeerId, TB), Error = EB>,
{
    type Output = (PeerId, future::Either<TA, TB>);
    type Error = Either<EA, EB>;
    type Future = MapOk<EitherFuture<A::Future, B::Future>, Factored<TA, TB>>;

    fn upgrade_outbound(self, sock: C, info: Self::Info) -> Self::Future {
        match info {
            Either::Left(i) => EitherFuture::First(self.0.upgrade_outbound(sock, i)),
            Either::Right(i) => EitherFuture::Second(self.1.upgrade_outbound(sock, i)),
        }
        .map_ok(future::Either::factor_first as Factored<TA, TB>)
    }
}
