namespace Conduit.Sync;
