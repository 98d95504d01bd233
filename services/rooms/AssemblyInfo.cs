namespace Conduit.Rooms;
