Console.WriteLine("loadgen placeholder");
