namespace Conduit.Common;
