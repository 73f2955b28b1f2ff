"""ebsdray.metrics"""
