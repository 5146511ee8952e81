using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;

// Usage: Hazy.ScoringProbe MODEL.zip ROWS.csv
// Loads MODEL.zip with mlContext.Hazy().LoadModel, scores each line of ROWS.csv (the comma-separated values of the Features
// column) and prints each row's Score, comma-separated with round-trip precision; then whether libtorch or c10 was mapped
// into the process.
if (args.Length != 2)
{
    Console.Error.WriteLine("usage: Hazy.ScoringProbe MODEL.zip ROWS.csv");
    return 2;
}

var rows = File.ReadAllLines(args[1]).Where(l => l.Length > 0)
    .Select(l => new Row { Features = l.Split(',').Select(v => float.Parse(v, CultureInfo.InvariantCulture)).ToArray() }).ToArray();
var mlContext = new MLContext(seed: 1);
var model = mlContext.Hazy().LoadModel(args[0], out _);
var definition = SchemaDefinition.Create(typeof(Row));
definition[nameof(Row.Features)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, rows[0].Features.Length);
var data = mlContext.Data.LoadFromEnumerable(rows, definition);
var scored = model.Transform(data);
var column = scored.Schema["Score"];
if (column.Type is VectorDataViewType)
{
    foreach (var score in scored.GetColumn<float[]>(column))
        Console.WriteLine(string.Join(",", score.Select(s => s.ToString("R", CultureInfo.InvariantCulture))));
}
else
{
    foreach (var score in scored.GetColumn<float>(column))
        Console.WriteLine(score.ToString("R", CultureInfo.InvariantCulture));
}
Console.WriteLine($"model: {model.GetType().Name}");
var maps = File.Exists("/proc/self/maps") ? File.ReadAllText("/proc/self/maps") : "";
Console.WriteLine($"native torch loaded: {maps.Contains("libtorch", StringComparison.Ordinal) || maps.Contains("libc10", StringComparison.Ordinal)}");
return 0;

internal sealed class Row
{
    public float[] Features { get; set; } = [];
}
