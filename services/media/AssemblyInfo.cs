namespace Conduit.Media;
