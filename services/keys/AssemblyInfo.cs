namespace Conduit.Keys;
