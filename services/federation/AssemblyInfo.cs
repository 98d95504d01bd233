namespace Conduit.Federation;
