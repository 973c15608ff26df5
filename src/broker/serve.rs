//! The embedded broker's connections, served by kafkv: tansu's request
//! routes, composed as tansu's own `services` composes them, except Fetch,
//! which goes to [`LongPollFetch`] (why: [`super::long_poll`]), and
//! Heartbeat, which goes to [`EvictingHeartbeat`] (why: [`super::groups`]). tansu's
//! `Broker::listen` builds its routes internally, so kafkv runs the accept
//! loop too; it does nothing else that kafkv uses (its maintenance tick
//! calls a `maintain` the wrapper leaves empty, and kafkv compacts on its
//! own schedule, [`super::maintenance`]).

use std::{io::ErrorKind, sync::Arc};

use rama::{
    Context, Layer as _, Service as _,
    layer::{MapErrLayer, MapStateLayer},
};
use tansu_broker::{Error, coordinator::group::administrator::Controller, service};
use tansu_sans_io::{ApiKey as _, FetchRequest, HeartbeatRequest};
use tansu_service::{
    BytesFrameLayer, FrameRequestLayer, FrameRouteBuilder, FrameRouteService, TcpBytesLayer,
    TcpContext, TcpContextLayer,
};
use tokio::net::TcpListener;
use tracing::debug;

use super::{
    CLUSTER_ID,
    groups::EvictingHeartbeat,
    long_poll::{LongPoll, LongPollFetch},
    storage::KafkvStorage,
};

type Routes = FrameRouteBuilder<(), Error>;

/// One of tansu's `service::storage` route builders.
type AddRoute = fn(Routes, KafkvStorage) -> Result<Routes, Error>;

/// Accepts connections on `listener` until it fails, serving each on its
/// own task.
pub async fn accept(
    listener: TcpListener,
    storage: KafkvStorage,
    groups: Controller<KafkvStorage>,
    kafkv_fetch: bool,
) -> Result<(), String> {
    let poll = kafkv_fetch.then(|| storage.long_poll());
    loop {
        let (stream, peer) = listener
            .accept()
            .await
            .map_err(|e| format!("the broker's listener failed: {e}"))?;
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%peer, %error, "could not set TCP_NODELAY");
        }
        let connection = match routes(storage.clone(), groups.clone(), poll.clone()) {
            Ok(routes) => (
                TcpContextLayer::new(TcpContext::default().cluster_id(Some(CLUSTER_ID.into()))),
                TcpBytesLayer::default(),
                BytesFrameLayer::default(),
            )
                .into_layer(routes),
            Err(error) => return Err(format!("the broker's routes: {error:?}")),
        };
        tokio::spawn(async move {
            match connection.serve(Context::default(), stream).await {
                Err(Error::Io(ref io))
                    if matches!(
                        io.kind(),
                        ErrorKind::UnexpectedEof
                            | ErrorKind::BrokenPipe
                            | ErrorKind::ConnectionReset
                    ) => {}
                Err(error) => debug!(%peer, ?error, "a broker connection ended"),
                Ok(_) => {}
            }
        });
    }
}

/// Every request route tansu 0.6 serves, with kafkv's Fetch (tansu's own
/// without `poll`: `--broker-paths tansu`).
fn routes(
    storage: KafkvStorage,
    groups: Controller<KafkvStorage>,
    poll: Option<Arc<LongPoll>>,
) -> Result<FrameRouteService<(), Error>, Error> {
    use service::storage as tansu;
    // tansu's `service::storage::services` list, less `fetch`.
    let storage_routes: [AddRoute; 25] = [
        tansu::add_offsets_to_txn,
        tansu::add_partitions_to_txn,
        tansu::alter_user_scram_credentials,
        tansu::consumer_group_describe,
        tansu::create_acls,
        tansu::create_topics,
        tansu::delete_groups,
        tansu::delete_records,
        tansu::delete_topics,
        tansu::describe_acls,
        tansu::describe_cluster,
        tansu::describe_configs,
        tansu::describe_groups,
        tansu::describe_topic_partitions,
        tansu::describe_user_scram_credentials,
        tansu::find_coordinator,
        tansu::get_telemetry_subscriptions,
        tansu::incremental_alter_configs,
        tansu::init_producer_id,
        tansu::list_groups,
        tansu::list_offsets,
        tansu::list_partition_reassignments,
        tansu::metadata,
        tansu::produce,
        tansu::txn_offset_commit_request,
    ];
    let routes = storage_routes
        .iter()
        .try_fold(FrameRouteService::<(), Error>::builder(), |routes, add| {
            add(routes, storage.clone())
        })?;
    let routes = match poll {
        Some(poll) => fetch(routes, storage.clone(), poll)?,
        None => tansu::fetch(routes, storage.clone())?,
    };
    // tansu's `service::coordinator::services`, with kafkv's Heartbeat.
    use service::coordinator;
    let routes = routes.with_route(
        HeartbeatRequest::KEY,
        EvictingHeartbeat {
            groups: groups.clone(),
            storage,
        }
        .boxed(),
    )?;
    let routes = [
        coordinator::join_group,
        coordinator::leave_group,
        coordinator::offset_commit,
        coordinator::offset_fetch,
        coordinator::sync_group,
    ]
    .iter()
    .try_fold(routes, |routes, add| add(routes, groups.clone()))?;
    service::auth::services(routes)?.build().map_err(Into::into)
}

fn fetch(routes: Routes, storage: KafkvStorage, poll: Arc<LongPoll>) -> Result<Routes, Error> {
    routes
        .with_route(
            FetchRequest::KEY,
            (
                MapErrLayer::new(Error::from),
                MapStateLayer::new(|_| storage),
                FrameRequestLayer::<FetchRequest>::new(),
            )
                .into_layer(LongPollFetch { poll })
                .boxed(),
        )
        .map_err(Into::into)
}
