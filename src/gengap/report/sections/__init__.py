"""The report's sections, each a function of :class:`gengap.report.data.ReportData`."""
